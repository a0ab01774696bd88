//! `berth policy check | simulate | decide` through the real binary.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn berth(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(args)
        .current_dir(repo_root())
        .output()
        .expect("run berth")
}

fn berth_stdin(args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run berth");
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    out
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn check_accepts_every_seed_policy() {
    let mut files: Vec<String> = std::fs::read_dir(repo_root().join("examples/seeds"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| p.strip_prefix(repo_root()).unwrap().display().to_string())
        .collect();
    files.sort();
    assert!(files.len() >= 13);
    let mut args = vec!["policy", "check", "--no-lint"];
    args.extend(files.iter().map(String::as_str));
    let out = berth(&args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(out.stdout.is_empty());
    // Linted (the default) they still pass: seed 002's placeholder actions are ERROR
    // findings Berth stores anyway, as IAM does; --strict fails on them.
    args.remove(2);
    let out = berth(&args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("ERROR INVALID_ACTION: The action ecr:action1 does not exist.")
    );
    args.insert(2, "--strict");
    assert_eq!(berth(&args).status.code(), Some(1));
}

#[test]
fn check_reports_file_path_and_message() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecr:*","Resource":"*"},
        {"Effect":"Allow","Principal":"*","Action":"ecr:*","Condition":{"IpAddress":{"aws:SourceIp":"54.240.143.0/33"}}}]}"#,
    )
    .unwrap();
    let good = dir.path().join("good.json");
    std::fs::write(
        &good,
        r#"{"Statement":{"Effect":"Deny","Action":"*","Resource":"*"}}"#,
    )
    .unwrap();
    let (bad, good) = (bad.display().to_string(), good.display().to_string());
    let out = berth(&[
        "policy",
        "check",
        "--no-lint",
        "--kind",
        "identity",
        &good,
        &bad,
    ]);
    assert_eq!(out.status.code(), Some(1));
    let lines: Vec<String> = text(&out.stdout).lines().map(str::to_string).collect();
    assert_eq!(
        lines,
        vec![
            format!("{bad}: Statement[1].Principal: Principal is not allowed in an identity policy: it applies to the identity it is attached to"),
            format!("{bad}: Statement[1].Resource: is missing: statements of an identity policy need one of Resource or NotResource"),
            format!(r#"{bad}: Statement[1].Condition.IpAddress."aws:SourceIp": "54.240.143.0/33" is not an IPv4 or IPv6 CIDR"#),
        ]
    );
    // Without --kind a document naming principals is read as a repository policy.
    let out = berth(&["policy", "check", &bad]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    assert!(stdout.starts_with(&format!("{bad}: Statement[0].Principal: is missing: statements of a repository policy must say whom")));
    let out = berth(&["policy", "check", "--kind", "nope", &good]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("unknown policy kind"));
    let out = berth(&["policy", "check", "/no/such/file.json"]);
    assert_eq!(out.status.code(), Some(2));
}

/// `NotPrincipal` with `Allow`: `check` reports an ERROR naming the statement and fails
/// (Berth refuses to store it); `simulate` evaluates it anyway, and it grants nothing.
#[test]
fn not_principal_with_allow_is_an_error_and_grants_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("not-mallory.json");
    std::fs::write(
        &path,
        r#"{"Version":"2012-10-17","Statement":[
  {"Sid":"AllButMallory","Effect":"Allow","NotPrincipal":{"AWS":"arn:aws:iam::111111111111:user/mallory"},"Action":"ecr:*"}]}"#,
    )
    .unwrap();
    let path = path.display().to_string();
    for kind in [None, Some("repository"), Some("registry")] {
        let mut args = vec!["policy", "check"];
        if let Some(k) = kind {
            args.extend(["--kind", k]);
        }
        args.push(&path);
        let out = berth(&args);
        assert_eq!(out.status.code(), Some(1), "{kind:?}");
        let stdout = text(&out.stdout);
        assert!(
            stdout.starts_with(&format!("{path}:2:58: ERROR ALLOW_WITH_NOT_PRINCIPAL: Statement[0] (Sid \"AllButMallory\") uses NotPrincipal with \"Effect\": \"Allow\"")),
            "{stdout}"
        );
        assert!(stdout.contains("(Statement[0].NotPrincipal)"), "{stdout}");
    }
    let out = berth(&[
        "policy",
        "simulate",
        "--resource-policy",
        &path,
        "--principal",
        "arn:aws:iam::111111111111:user/alice",
        "--action",
        "ecr:BatchGetImage",
        "--resource",
        MY_APP,
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("{\"decision\":\"ImplicitDeny\""),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn check_reports_json_syntax_and_size() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.json");
    std::fs::write(&broken, "{\"Statement\": [\n  {\"Effect\": \"Allow\",}\n]}").unwrap();
    let broken = broken.display().to_string();
    let out = berth(&["policy", "check", &broken]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stdout),
        format!("{broken}: invalid JSON at line 2, column 22: unexpected character '}}', expected a member name in double quotes\n")
    );
    let big = dir.path().join("big.json");
    let doc = format!(
        r#"{{"Statement":{{"Sid":"{}","Effect":"Allow","Principal":"*","Action":"sts:AssumeRole"}}}}"#,
        "x".repeat(3000)
    );
    std::fs::write(&big, doc).unwrap();
    let out = berth(&[
        "policy",
        "check",
        "--kind",
        "trust",
        &big.display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).contains("a role trust policy may have at most 2048"));
}

const IDENTITY: &str = "examples/seeds/004-push-pull-identity.json";
const MY_APP: &str = "arn:aws:ecr:us-east-1:111111111111:repository/my-app";

#[test]
fn simulate_explains_allow_and_deny() {
    let out = berth(&[
        "policy",
        "simulate",
        "--identity-policy",
        IDENTITY,
        "--principal",
        "arn:aws:iam::111111111111:user/ci",
        "--action",
        "ecr:PutImage",
        "--resource",
        MY_APP,
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out.stdout),
        format!(
            "Decision: Allow\nReason: User: arn:aws:iam::111111111111:user/ci is authorized to perform: ecr:PutImage on resource: {MY_APP} by an identity-based policy\nDeciding statements:\n  {IDENTITY} identity policy, Statement[2] (Sid \"AllowECRPush\"): Allow\n"
        )
    );
    let out = berth(&[
        "policy",
        "simulate",
        "--identity-policy",
        IDENTITY,
        "--principal",
        "arn:aws:iam::111111111111:user/ci",
        "--action",
        "ecr:DeleteRepository",
        "--resource",
        MY_APP,
        "--json",
    ]);
    assert_eq!(
        text(&out.stdout),
        format!(
            "{{\"decision\":\"ImplicitDeny\",\"reason\":\"User: arn:aws:iam::111111111111:user/ci is not authorized to perform: ecr:DeleteRepository on resource: {MY_APP} because no identity-based policy allows the ecr:DeleteRepository action\",\"statements\":[],\"missing_context_keys\":[]}}\n"
        )
    );
}

#[test]
fn simulate_with_resource_policy_context_and_missing_keys() {
    let ip = "examples/seeds/000-ip-restricted.json";
    let base = [
        "policy",
        "simulate",
        "--resource-policy",
        ip,
        "--principal",
        "arn:aws:sts::111111111111:assumed-role/deploy/run-1",
        "--action",
        "ecr:BatchGetImage",
        "--resource",
        MY_APP,
    ];
    let run = |extra: &[&str]| {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        text(&berth(&args).stdout)
    };
    assert!(run(&["--context", "aws:SourceIp=54.240.143.7"]).starts_with("Decision: Allow\n"));
    assert!(
        run(&["--context", "aws:SourceIp=54.240.143.188"]).starts_with("Decision: ImplicitDeny\n")
    );
    let missing = run(&["--json"]);
    assert!(
        missing.contains("\"missing_context_keys\":[\"aws:SourceIp\"]"),
        "{missing}"
    );
    let deny = text(
        &berth(&[
            "policy",
            "simulate",
            "--identity-policy",
            IDENTITY,
            "--resource-policy",
            "examples/seeds/000-deny-all-pull.json",
            "--principal",
            "arn:aws:iam::111111111111:user/ci",
            "--action",
            "ecr:BatchGetImage",
            "--resource",
            MY_APP,
        ])
        .stdout,
    );
    assert!(deny.starts_with("Decision: ExplicitDeny\nReason: User: arn:aws:iam::111111111111:user/ci is not authorized to perform: ecr:BatchGetImage on resource: arn:aws:ecr:us-east-1:111111111111:repository/my-app with an explicit deny in a resource-based policy\n"), "{deny}");
    assert!(deny.contains("examples/seeds/000-deny-all-pull.json resource policy, Statement[0] (Sid \"DenyPull\"): Deny"));
}

#[test]
fn simulate_rejects_bad_input_clearly() {
    let out = berth(&[
        "policy",
        "simulate",
        "--identity-policy",
        "examples/seeds/000-deny-all-pull.json",
        "--principal",
        "arn:aws:iam::111111111111:user/ci",
        "--action",
        "ecr:X",
        "--resource",
        "*",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr)
        .contains("Statement[0].Principal: Principal is not allowed in an identity policy"));
    let out = berth(&[
        "policy",
        "simulate",
        "--principal",
        "bob",
        "--action",
        "ecr:X",
        "--resource",
        "*",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("is not a principal"));
}

#[test]
fn decide_answers_every_line_in_order() {
    let doc = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecr:Batch*","Resource":"*"},{"Effect":"Deny","Action":"ecr:Delete*","Resource":"*"}]}"#;
    let actions = ["ecr:BatchGetImage", "ecr:DeleteRepository", "ecr:PutImage"];
    let mut input = String::new();
    let mut want = String::new();
    // Enough lines to cross several read batches and worker hand-offs.
    for i in 0..30_000 {
        let a = actions[i % 3];
        match i % 1000 {
            7 => {
                input.push_str("this is not json\n");
                want.push_str("{\"id\":null,\"error\":\"invalid JSON at line 1, column 1: unexpected character 't', expected '{'\"}\n");
            }
            8 => {
                input.push_str(&format!(
                    r#"{{"id":"s{i}","principal":"arn:aws:iam::111111111111:user/ci","action":"{a}","resource":"*","identity_policies":[{{"Statement":{{"Effect":"Allow"}}}}]}}"#
                ));
                input.push('\n');
                want.push_str(&format!("{{\"id\":\"s{i}\",\"error\":\"identity_policies[0]: Statement.Action: is missing: every statement needs one of Action or NotAction; Statement.Resource: is missing: statements of an identity policy need one of Resource or NotResource\"}}\n"));
            }
            _ => {
                input.push_str(&format!(
                    r#"{{"id":{i},"principal":"arn:aws:iam::111111111111:user/ci","action":"{a}","resource":"arn:aws:ecr:us-east-1:111111111111:repository/app","resource_account":"111111111111","context":{{"aws:SourceIp":"10.0.0.{}"}},"identity_policies":[{doc}],"resource_policy":null,"unknown":{{"x":[1,2]}}}}"#,
                    i % 250
                ));
                input.push('\n');
                let d = ["Allow", "ExplicitDeny", "ImplicitDeny"][i % 3];
                want.push_str(&format!("{{\"id\":{i},\"decision\":\"{d}\"}}\n"));
            }
        }
    }
    let out = berth_stdin(&["policy", "decide"], input.as_bytes());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let got = text(&out.stdout);
    assert_eq!(got.lines().count(), 30_000);
    assert!(got == want, "answers differ from the expected stream");
}

#[test]
fn decide_handles_edges_of_the_stream() {
    let out = berth_stdin(&["policy", "decide"], b"");
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty());
    // No final newline; CRLF; a blank line; invalid UTF-8.
    let out = berth_stdin(
        &["policy", "decide"],
        b"{\"id\":1,\"principal\":\"arn:aws:iam::111111111111:root\",\"action\":\"ecr:PutImage\",\"resource\":\"*\"}\r\n\n\xff\xfe\n{\"id\":2}",
    );
    assert_eq!(
        text(&out.stdout),
        "{\"id\":1,\"decision\":\"Allow\"}\n\
         {\"id\":null,\"error\":\"invalid JSON at line 1, column 1: unexpected end of input, expected '{'\"}\n\
         {\"id\":null,\"error\":\"the line is not valid UTF-8\"}\n\
         {\"id\":2,\"error\":\"principal is missing\"}\n"
    );
}

#[test]
fn check_lint_prints_findings_with_their_place() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("repo.json");
    std::fs::write(
        &p,
        "{\n  \"Version\": \"2012-10-17\",\n  \"Statement\": [{\n    \"Effect\": \"Allow\",\n    \"Principal\": \"*\",\n    \"Action\": [\"ecr:BatchGetImage\", \"ecr:PutImgae\", \"ecr:PutImage\"]\n  }]\n}\n",
    )
    .unwrap();
    let p = p.display().to_string();
    let out = berth(&["policy", "check", &p]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "an unknown action is stored by IAM: it fails only --strict"
    );
    assert_eq!(
        berth(&["policy", "check", "--strict", &p]).status.code(),
        Some(1)
    );
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines.contains(&format!("{p}:6:37: ERROR INVALID_ACTION: The action ecr:PutImgae does not exist. Did you mean ecr:PutImage? (Statement[0].Action[1])").as_str()), "{stdout}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("SECURITY_WARNING PUBLIC_WRITE_ACCESS")),
        "{stdout}"
    );
    // With --no-lint the same valid document passes silently.
    let out = berth(&["policy", "check", "--no-lint", &p]);
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty());
    // A finding Berth refuses to store fails the check.
    let q = dir.path().join("identity.json");
    std::fs::write(&q, r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecr:TagResource","Resource":"*","Condition":{"StringEquals":{"aws:TagKeys":"team"}}}]}"#).unwrap();
    let out = berth(&["policy", "check", q.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("ERROR MISSING_QUALIFIER"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn public_names_the_seed_policies_open_to_anyone() {
    let root = repo_root();
    let seeds = root.join("examples/seeds");
    let mut files: Vec<String> = std::fs::read_dir(&seeds)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("000-"))
        .map(|p| p.display().to_string())
        .collect();
    files.sort();
    let mut args = vec!["policy", "public"];
    args.extend(files.iter().map(String::as_str));
    let out = berth(&args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // Written down from the seeds: only "allow all accounts pull" lets anyone in; the
    // IP-restricted policy narrows by address, the others name their principals, the
    // deny-all policy grants nothing, the CodeBuild one names a service.
    let expected = format!(
        "{}: readable by anyone signed in (ecr:BatchGetImage, ecr:GetDownloadUrlForLayer)\n",
        seeds.join("000-allow-all-accounts-pull.json").display()
    );
    assert_eq!(text(&out.stdout), expected);
    let out = berth(&["policy", "public"]);
    assert_eq!(out.status.code(), Some(2));
    // A condition a stranger meets anyway (HTTPS) leaves a repository public, and says
    // so; one on who the caller is (its organization) keeps it private.
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("tls.json");
    std::fs::write(&tls, r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"ecr:BatchGetImage",
        "Condition":{"Bool":{"aws:SecureTransport":"true"}}}]}"#).unwrap();
    let org = dir.path().join("org.json");
    std::fs::write(&org, r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"ecr:BatchGetImage",
        "Condition":{"StringEquals":{"aws:PrincipalOrgID":"o-123"}}}]}"#).unwrap();
    let out = berth(&[
        "policy",
        "public",
        tls.to_str().unwrap(),
        org.to_str().unwrap(),
    ]);
    assert_eq!(
        text(&out.stdout),
        format!(
            "{}: readable by anyone signed in when aws:SecureTransport (ecr:BatchGetImage)\n",
            tls.display()
        )
    );
}

/// `berth policy who-can` on the seed policies, offline: the expected answers are written
/// down from reading each seed (account 111111111111).
#[test]
fn who_can_answers_on_the_seed_policies() {
    const ROOT: &str = "arn:aws:iam::111111111111:root";
    const ANY: &str = "any identity of 111111111111 (if its own policies allow)";
    let seed = |f: &str| format!("examples/seeds/{f}");
    type Case<'a> = (&'a str, Vec<String>, Vec<&'a str>);
    let repo = |f: &str| vec!["--repository-policy".to_string(), seed(f)];
    let cases: Vec<Case> = vec![
        (
            "ecr:PutImage",
            repo("000-allow-iam-users-push-pull.json"),
            vec![
                ROOT,
                "arn:aws:iam::111111111111:user/push-pull-user-1 (unless its own policies deny)",
                "arn:aws:iam::111111111111:user/push-pull-user-2 (unless its own policies deny)",
            ],
        ),
        (
            "ecr:PutImage",
            repo("000-allow-another-account-push.json"),
            vec![
                ROOT,
                "arn:aws:iam::222222222222:root (if its own policies allow)",
            ],
        ),
        // Cross-account push is granted, pull is not.
        (
            "ecr:BatchGetImage",
            repo("000-allow-another-account-push.json"),
            vec![ROOT],
        ),
        (
            "ecr:BatchGetImage",
            repo("000-pull-users-and-admin.json"),
            vec![
                ROOT,
                "arn:aws:iam::111111111111:user/admin-user (unless its own policies deny)",
                "arn:aws:iam::111111111111:user/pull-user-1 (unless its own policies deny)",
                "arn:aws:iam::111111111111:user/pull-user-2 (unless its own policies deny)",
            ],
        ),
        (
            "ecr:PutImage",
            repo("000-pull-users-and-admin.json"),
            vec![
                ROOT,
                "arn:aws:iam::111111111111:user/admin-user (unless its own policies deny)",
            ],
        ),
        (
            "ecr:BatchGetImage",
            repo("000-allow-all-accounts-pull.json"),
            vec![ROOT, "* (any AWS principal) (if its own policies allow)"],
        ),
        (
            "ecr:PutImage",
            repo("000-allow-all-accounts-pull.json"),
            vec![ROOT],
        ),
        // The explicit deny applies to everyone, the root user included.
        ("ecr:BatchGetImage", repo("000-deny-all-pull.json"), vec![]),
        ("ecr:PutImage", repo("000-deny-all-pull.json"), vec![ROOT]),
        (
            "ecr:PutImage",
            repo("000-ip-restricted.json"),
            vec![
                ROOT,
                "* (any AWS principal) when aws:SourceIp (if its own policies allow)",
            ],
        ),
        (
            "ecr:BatchGetImage",
            repo("000-codebuild-service.json"),
            vec![ROOT, "codebuild.amazonaws.com"],
        ),
        (
            "ecr:PutImage",
            repo("000-codebuild-service.json"),
            vec![ROOT],
        ),
        // Identity policies: the user of seed 004 pushes to my-app, and nowhere else.
        (
            "ecr:PutImage",
            vec![
                "--identity".into(),
                format!(
                    "arn:aws:iam::111111111111:user/ci={}",
                    seed("004-push-pull-identity.json")
                ),
            ],
            vec![ROOT, "arn:aws:iam::111111111111:user/ci"],
        ),
        // ...unless the repository policy denies it.
        (
            "ecr:BatchGetImage",
            vec![
                "--identity".into(),
                format!(
                    "arn:aws:iam::111111111111:user/ci={}",
                    seed("004-push-pull-identity.json")
                ),
                "--repository-policy".into(),
                seed("000-deny-all-pull.json"),
            ],
            vec![],
        ),
        (
            "ecr:DeleteRepository",
            vec![
                "--identity".into(),
                format!(
                    "arn:aws:iam::111111111111:user/ops={}",
                    seed("002-all-ecr-resources-identity.json")
                ),
            ],
            vec![ROOT],
        ),
    ];
    for (action, args, expected) in &cases {
        let mut all = vec![
            "policy",
            "who-can",
            "--action",
            action,
            "--repository",
            "my-app",
            "--account",
            "111111111111",
        ];
        all.extend(args.iter().map(String::as_str));
        let out = berth(&all);
        assert_eq!(out.status.code(), Some(0), "{all:?}: {}", text(&out.stderr));
        let lines: Vec<String> = text(&out.stdout).lines().map(str::to_string).collect();
        // Without the account's IAM data, its identities might be allowed by their own
        // policies wherever the resource policies do not deny.
        let mut expected = expected.clone();
        if !expected.is_empty() {
            expected.push(ANY);
        }
        assert_eq!(lines, expected, "{all:?}");
        if expected.is_empty() {
            assert!(text(&out.stderr).contains("nobody may"), "{all:?}");
        }
    }
    // Seed 002 allows deleting my-repo.
    let out = berth(&[
        "policy",
        "who-can",
        "--action",
        "ecr:DeleteRepository",
        "--repository",
        "my-repo",
        "--identity",
        &format!(
            "arn:aws:iam::111111111111:user/ops={}",
            seed("002-all-ecr-resources-identity.json")
        ),
    ]);
    assert_eq!(
        text(&out.stdout),
        format!("{ROOT}\narn:aws:iam::111111111111:user/ops\n{ANY}\n")
    );
    // Seed 003: registry policies name the replicating accounts for us-west-2 repositories.
    for (file, repository, expected) in [
        (
            "003-registry-replicate-all.json",
            "any",
            vec![
                ROOT,
                "arn:aws:iam::222222222222:root (if its own policies allow)",
            ],
        ),
        (
            "003-registry-prod-prefix.json",
            "prod-api",
            vec![
                ROOT,
                "arn:aws:iam::222222222222:root (if its own policies allow)",
            ],
        ),
        ("003-registry-prod-prefix.json", "dev-api", vec![ROOT]),
        (
            "003-registry-multiple-accounts.json",
            "any",
            vec![
                ROOT,
                "arn:aws:iam::222222222222:root (if its own policies allow)",
                "arn:aws:iam::333333333333:root (if its own policies allow)",
            ],
        ),
    ] {
        let out = berth(&[
            "policy",
            "who-can",
            "--action",
            "ecr:ReplicateImage",
            "--repository",
            repository,
            "--region",
            "us-west-2",
            "--registry-policy",
            &seed(file),
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let mut expected = expected.clone();
        expected.push(ANY);
        assert_eq!(
            text(&out.stdout).lines().collect::<Vec<_>>(),
            expected,
            "{file} {repository}"
        );
    }
}

/// who-can on the output of `aws iam get-account-authorization-details`: group and
/// managed policies count, a boundary narrows, principal tags decide conditions.
#[test]
fn who_can_reads_authorization_details_files() {
    let dir = tempfile::tempdir().unwrap();
    let allow = serde_json::json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ecr:*", "Resource": "*"}]});
    let pull_only = serde_json::json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ecr:BatchGetImage", "Resource": "*"}]});
    let by_tag = serde_json::json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ecr:PutImage", "Resource": "*",
        "Condition": {"StringEquals": {"aws:PrincipalTag/team": "build"}}}]});
    let acct = "arn:aws:iam::444455556666";
    let details = serde_json::json!({
        "UserDetailList": [
            {"UserName": "grouped", "UserId": "AIDA1", "Arn": format!("{acct}:user/grouped"), "GroupList": ["builders"],
             "UserPolicyList": [], "AttachedManagedPolicies": []},
            {"UserName": "bounded", "UserId": "AIDA2", "Arn": format!("{acct}:user/bounded"), "GroupList": ["builders"],
             "PermissionsBoundary": {"PermissionsBoundaryType": "Policy", "PermissionsBoundaryArn": format!("{acct}:policy/pull-only")}},
            {"UserName": "tagged", "UserId": "AIDA3", "Arn": format!("{acct}:user/tagged"), "GroupList": [],
             "UserPolicyList": [{"PolicyName": "t", "PolicyDocument": by_tag}], "Tags": [{"Key": "team", "Value": "build"}]},
            {"UserName": "untagged", "UserId": "AIDA4", "Arn": format!("{acct}:user/untagged"), "GroupList": [],
             "UserPolicyList": [{"PolicyName": "t", "PolicyDocument": by_tag}]}
        ],
        "GroupDetailList": [{"GroupName": "builders", "GroupPolicyList": [], "AttachedManagedPolicies": [
            {"PolicyName": "all", "PolicyArn": format!("{acct}:policy/all")}]}],
        "RoleDetailList": [{"RoleName": "deployer", "RoleId": "AROA1", "Arn": format!("{acct}:role/deploy/deployer"),
             "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                 "Principal": {"Service": "codebuild.amazonaws.com", "AWS": format!("{acct}:user/untagged")}, "Action": "sts:AssumeRole"}]},
             "RolePolicyList": [{"PolicyName": "p", "PolicyDocument": pull_only}], "AttachedManagedPolicies": []}],
        "Policies": [
            {"PolicyName": "all", "Arn": format!("{acct}:policy/all"), "PolicyVersionList": [{"Document": allow, "VersionId": "v1", "IsDefaultVersion": true}]},
            {"PolicyName": "pull-only", "Arn": format!("{acct}:policy/pull-only"), "PolicyVersionList": [{"Document": pull_only, "VersionId": "v1", "IsDefaultVersion": true}]}
        ]
    });
    let file = dir.path().join("details.json");
    std::fs::write(&file, details.to_string()).unwrap();
    let run = |action: &str| {
        let out = berth(&[
            "policy",
            "who-can",
            "--action",
            action,
            "--repository",
            "app",
            "--authorization-details",
            file.to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    assert_eq!(
        run("ecr:PutImage"),
        format!("{acct}:root\n{acct}:user/grouped\n{acct}:user/tagged\n")
    );
    assert_eq!(
        run("ecr:BatchGetImage"),
        // The role's trust policy lets CodeBuild and one user in: they pull through it.
        format!(
            "{acct}:root\n{acct}:user/grouped\n{acct}:user/bounded\n{acct}:role/deploy/deployer\n\
             {acct}:user/untagged via {acct}:role/deploy/deployer\n\
             codebuild.amazonaws.com via {acct}:role/deploy/deployer\n"
        )
    );
    // The repository's tags are facts: a grant to anyone on a tag holds when it is there.
    let open = dir.path().join("open.json");
    std::fs::write(&open, r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"ecr:BatchGetImage",
        "Condition":{"StringEquals":{"aws:ResourceTag/visibility":"public"}}}]}"#).unwrap();
    for (tag, anyone) in [("visibility=public", true), ("visibility=private", false)] {
        let out = berth(&[
            "policy",
            "who-can",
            "--action",
            "ecr:BatchGetImage",
            "--repository",
            "app",
            "--repository-policy",
            open.to_str().unwrap(),
            "--repository-tag",
            tag,
            "--anonymous-pull",
        ]);
        assert_eq!(
            text(&out.stdout).contains("* (anyone, even unauthenticated)\n"),
            anyone,
            "{tag}"
        );
    }
    // Sources are exclusive, and a missing one is named.
    let out = berth(&[
        "policy",
        "who-can",
        "--action",
        "ecr:PutImage",
        "--repository",
        "app",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--data-dir, --endpoint-url (or --aws), or policy files"));
}

/// What a request carries (transport, address, organization) is unknown in advance: a
/// deny on it makes grants conditional instead of hiding or inventing principals; the
/// user id and the tags of known identities are facts; an anonymous caller has no
/// organization; a policy the data lacks is said.
#[test]
fn who_can_judges_unknown_request_keys_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let acct = "arn:aws:iam::444455556666";
    let push = serde_json::json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ecr:PutImage", "Resource": "*"}]});
    let details = serde_json::json!({
        "UserDetailList": [
            {"UserName": "pusher", "UserId": "AIDAPUSHER", "Arn": format!("{acct}:user/pusher"),
             "UserPolicyList": [{"PolicyName": "p", "PolicyDocument": push}]},
            {"UserName": "idle", "UserId": "AIDAIDLE", "Arn": format!("{acct}:user/idle")},
            {"UserName": "named", "UserId": "AIDANAMED", "Arn": format!("{acct}:user/named")},
            {"UserName": "partial", "UserId": "AIDAPARTIAL", "Arn": format!("{acct}:user/partial"),
             "AttachedManagedPolicies": [{"PolicyName": "gone", "PolicyArn": "arn:aws:iam::aws:policy/Gone"}]}
        ],
        "GroupDetailList": [], "RoleDetailList": [], "Policies": []
    });
    let details_file = dir.path().join("details.json");
    std::fs::write(&details_file, details.to_string()).unwrap();
    let repo_policy = dir.path().join("repo.json");
    std::fs::write(
        &repo_policy,
        serde_json::json!({"Version": "2012-10-17", "Statement": [
            {"Sid": "TlsOnly", "Effect": "Deny", "Principal": "*", "Action": "ecr:*",
             "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
            {"Sid": "ById", "Effect": "Allow", "Principal": "*", "Action": "ecr:PutImage",
             "Condition": {"StringLike": {"aws:userid": "AIDANAMED"}}},
            {"Sid": "Org", "Effect": "Allow", "Principal": "*", "Action": "ecr:PutImage",
             "Condition": {"StringEquals": {"aws:PrincipalOrgID": "o-12345"}}}
        ]})
        .to_string(),
    )
    .unwrap();
    let out = berth(&[
        "policy",
        "who-can",
        "--action",
        "ecr:PutImage",
        "--repository",
        "app",
        "--authorization-details",
        details_file.to_str().unwrap(),
        "--repository-policy",
        repo_policy.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).lines().collect::<Vec<_>>(), vec![
        // A details file may come from AWS, where identities may belong to an
        // organization: the Org grant lets in those with no other "when aws:PrincipalOrgID".
        format!("{acct}:root when aws:SecureTransport"),
        format!("{acct}:user/pusher when aws:SecureTransport"),
        format!("{acct}:user/idle when aws:PrincipalOrgID, aws:SecureTransport"),
        format!("{acct}:user/named when aws:SecureTransport"),
        format!("{acct}:user/partial when aws:PrincipalOrgID, aws:SecureTransport (policy arn:aws:iam::aws:policy/Gone is not in the data: left out)"),
        "* (any AWS principal) when aws:userid, aws:PrincipalOrgID, aws:SecureTransport (if its own policies allow)".to_string(),
    ]);
}

/// `ForAnyValue:…IfExists` needs a value: on a push, which carries no request tags, an
/// Allow conditioned on `aws:TagKeys` with it grants nothing; on TagResource the tags are
/// the request's to choose, so it grants "when aws:TagKeys". `ForAllValues:…IfExists`
/// holds over no tags at all.
#[test]
fn who_can_reads_for_any_value_if_exists_as_the_engine_does() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, condition: serde_json::Value| {
        let p = dir.path().join(name);
        let doc = serde_json::json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Action": ["ecr:PutImage", "ecr:TagResource"], "Resource": "*", "Condition": condition}]});
        std::fs::write(&p, doc.to_string()).unwrap();
        p.display().to_string()
    };
    let any = write(
        "any.json",
        serde_json::json!({"ForAnyValue:StringEqualsIfExists": {"aws:TagKeys": ["team"]}}),
    );
    let all = write(
        "all.json",
        serde_json::json!({"ForAllValues:StringEqualsIfExists": {"aws:TagKeys": ["team"]}}),
    );
    let run = |action: &str| {
        let out = berth(&[
            "policy",
            "who-can",
            "--action",
            action,
            "--repository",
            "app",
            "--account",
            "111111111111",
            "--identity",
            &format!("arn:aws:iam::111111111111:user/any={any}"),
            "--identity",
            &format!("arn:aws:iam::111111111111:user/all={all}"),
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    let push = run("ecr:PutImage");
    assert!(!push.contains("user/any"), "{push}");
    assert!(
        push.contains("arn:aws:iam::111111111111:user/all\n"),
        "{push}"
    );
    let tag = run("ecr:TagResource");
    assert!(
        tag.contains("arn:aws:iam::111111111111:user/any when aws:TagKeys\n"),
        "{tag}"
    );
}

/// NotPrincipal in an Allow grants nothing (AWS does not support it); variables in condition values and
/// resources count as unknown keys; a role's session picks its own tags; the root user
/// never assumes a role.
#[test]
fn who_can_handles_not_principal_variables_and_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, v: serde_json::Value| {
        let p = dir.path().join(name);
        std::fs::write(&p, v.to_string()).unwrap();
        p.display().to_string()
    };
    let run = |args: &[&str]| {
        let mut all = vec![
            "policy",
            "who-can",
            "--action",
            "ecr:PutImage",
            "--repository",
            "app",
            "--account",
            "111111111111",
        ];
        all.extend(args);
        let out = berth(&all);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    let not_bob = write(
        "not-bob.json",
        serde_json::json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "NotPrincipal": {"AWS": "arn:aws:iam::111111111111:user/bob"}, "Action": "ecr:*"}]}),
    );
    let out = run(&["--repository-policy", &not_bob]);
    assert!(!out.contains("* (any"), "{out}");
    assert!(!out.contains("user/bob"), "{out}");
    let unrelated = write(
        "unrelated.json",
        serde_json::json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"AWS": "111111111111"}, "Action": "ecr:DescribeImages"}]}),
    );
    assert_eq!(
        out,
        run(&["--repository-policy", &unrelated]),
        "the NotPrincipal Allow grants like a policy that grants nothing"
    );

    let abac = write(
        "abac.json",
        serde_json::json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::222222222222:root"}, "Action": "ecr:PutImage",
        "Condition": {"StringEquals": {"aws:ResourceTag/team": "${aws:PrincipalTag/team}"}}}]}),
    );
    let out = run(&["--repository-policy", &abac, "--repository-tag", "team=pay"]);
    assert!(out.contains("arn:aws:iam::222222222222:root when aws:principaltag/team (if its own policies allow)\n"), "{out}");

    // The registry's region is known, and a push carries no request tags: a region
    // guard does not make grants conditional, a deny on a missing tag always applies.
    let guards = write(
        "guards.json",
        serde_json::json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::222222222222:root"}, "Action": "ecr:*"},
        {"Effect": "Deny", "Principal": "*", "Action": "ecr:*",
         "Condition": {"StringNotEquals": {"aws:RequestedRegion": "us-east-1"}}}]}),
    );
    let out = run(&["--repository-policy", &guards]);
    assert!(
        out.contains("arn:aws:iam::222222222222:root (if its own policies allow)\n"),
        "{out}"
    );
    let tags = write(
        "tags.json",
        serde_json::json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::222222222222:root"}, "Action": "ecr:*"},
        {"Effect": "Deny", "Principal": "*", "Action": "ecr:*", "Condition": {"Null": {"aws:RequestTag/owner": "true"}}}]}),
    );
    assert_eq!(run(&["--repository-policy", &tags]), "");

    let acct = "arn:aws:iam::111111111111";
    let details = write(
        "details.json",
        serde_json::json!({
            "UserDetailList": [], "GroupDetailList": [], "Policies": [],
            "RoleDetailList": [{"RoleName": "tagged", "RoleId": "AROATAGGED", "Arn": format!("{acct}:role/tagged"),
                "Tags": [{"Key": "team", "Value": "dev"}],
                "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                    "Principal": {"AWS": format!("{acct}:root")}, "Action": "sts:AssumeRole"}]},
                "RolePolicyList": [{"PolicyName": "p", "PolicyDocument": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                    "Action": "ecr:PutImage", "Resource": "*", "Condition": {"StringEquals": {"aws:PrincipalTag/team": "pay"}}}]}}]}]
        }),
    );
    let out = run(&["--authorization-details", &details]);
    assert!(
        out.contains(&format!("{acct}:role/tagged when aws:PrincipalTag/team\n")),
        "{out}"
    );
    assert!(!out.contains("root via"), "{out}");
}
