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
    let mut args = vec!["policy", "check"];
    args.extend(files.iter().map(String::as_str));
    let out = berth(&args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(out.stdout.is_empty());
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
    let out = berth(&["policy", "check", "--kind", "identity", &good, &bad]);
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
    let out = berth(&["policy", "check", "--lint", &p]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "an ERROR finding fails the check"
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
    // Without --lint the same valid document passes silently.
    let out = berth(&["policy", "check", &p]);
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty());
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
        "{}: readable by anyone (ecr:BatchGetImage, ecr:GetDownloadUrlForLayer)\n",
        seeds.join("000-allow-all-accounts-pull.json").display()
    );
    assert_eq!(text(&out.stdout), expected);
    let out = berth(&["policy", "public"]);
    assert_eq!(out.status.code(), Some(2));
}
