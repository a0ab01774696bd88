"""Console passwords the IAM way, with the aws CLI: login profiles, a user changing its own
password, and the account's password policy; passwords stored as argon2id hashes only."""

from berth import Creds, allow, doc, server, unique  # noqa: F401 (server: the fixture)


def test_login_profiles_with_the_aws_cli(server):
    s, root = server, server.root
    name = unique("console")
    s.cli(root, "iam", "create-user", "--user-name", name)
    _, admin = s.new_user(policies=[doc(allow("iam:*"))])

    # IAM's default policy without an account policy: 8 characters, three of four kinds.
    e = s.cli_error(root, "iam", "create-login-profile", "--user-name", name, "--password", "weakpass")
    assert e.code == "PasswordPolicyViolation", e
    password = "Harbour-Lights-42"
    out = s.cli(root, "iam", "create-login-profile", "--user-name", name, "--password", password,
                "--password-reset-required")
    assert out["LoginProfile"]["UserName"] == name and out["LoginProfile"]["PasswordResetRequired"] is True
    assert "CreateDate" in out["LoginProfile"] and "Password" not in out["LoginProfile"]
    e = s.cli_error(root, "iam", "create-login-profile", "--user-name", name, "--password", password)
    assert e.code == "EntityAlreadyExists" and "already exists" in e.message, e
    got = s.cli(admin, "iam", "get-login-profile", "--user-name", name)["LoginProfile"]
    assert got["UserName"] == name and got["PasswordResetRequired"] is True
    other = unique("nopw")
    s.cli(root, "iam", "create-user", "--user-name", other)
    e = s.cli_error(root, "iam", "get-login-profile", "--user-name", other)
    assert e.code == "NoSuchEntity" and e.message == f"Login Profile for User {other} cannot be found.", e

    # Only a hash is stored: no trace of the password in the database.
    rows = s.sql("SELECT password_hash FROM login_profiles WHERE user_name = ?", (name,))
    assert len(rows) == 1 and rows[0][0].startswith("$argon2id$") and password not in rows[0][0], rows

    # A user with a login profile is not deleted until it is removed.
    e = s.cli_error(root, "iam", "delete-user", "--user-name", name)
    assert e.code == "DeleteConflict" and "login profile" in e.message, e

    # The account's password policy, read back as IAM answers it.
    s.cli(root, "iam", "update-account-password-policy", "--minimum-password-length", "12",
          "--require-symbols", "--require-numbers", "--allow-users-to-change-password")
    policy = s.cli(root, "iam", "get-account-password-policy")["PasswordPolicy"]
    assert policy["MinimumPasswordLength"] == 12 and policy["RequireSymbols"] is True
    assert policy["RequireUppercaseCharacters"] is False and policy["AllowUsersToChangePassword"] is True
    assert policy["ExpirePasswords"] is False
    e = s.cli_error(root, "iam", "update-login-profile", "--user-name", name, "--password", "Short-1")
    assert e.code == "PasswordPolicyViolation" and "at least 12" in e.message, e

    # The user changes its own password (allowed by the policy's AllowUsersToChangePassword,
    # without any identity policy): the old one must be right, the new one must comply.
    key = s.cli(root, "iam", "create-access-key", "--user-name", name)["AccessKey"]
    user = Creds.from_access_key(key, s.account)
    e = s.cli_error(user, "iam", "change-password", "--old-password", "wrong-Password-1",
                    "--new-password", "Another-Long-Pass-7")
    assert e.code == "AccessDenied", e
    e = s.cli_error(user, "iam", "change-password", "--old-password", password, "--new-password", "NoSymbols12345")
    assert e.code == "PasswordPolicyViolation" and "symbol" in e.message, e
    s.cli(user, "iam", "change-password", "--old-password", password, "--new-password", "Another-Long-Pass-7")
    assert s.cli(root, "iam", "get-login-profile", "--user-name", name)["LoginProfile"]["PasswordResetRequired"] is False
    new_hash = s.sql("SELECT password_hash FROM login_profiles WHERE user_name = ?", (name,))[0][0]
    assert new_hash != rows[0][0]
    # Other IAM calls stay refused to it (the policy grants only its own password).
    e = s.cli_error(user, "iam", "list-users")
    assert e.code == "AccessDenied", e

    # Without the policy, changing one's password needs iam:ChangePassword.
    s.cli(root, "iam", "delete-account-password-policy")
    e = s.cli_error(root, "iam", "get-account-password-policy")
    assert e.code == "NoSuchEntity", e
    e = s.cli_error(user, "iam", "change-password", "--old-password", "Another-Long-Pass-7",
                    "--new-password", "Third-Long-Pass-8")
    assert e.code == "AccessDenied", e
    # Root (not an IAM user) has no password to change this way.
    e = s.cli_error(root, "iam", "change-password", "--old-password", "x", "--new-password", "Third-Long-Pass-8")
    assert e.code == "InvalidUserType", e

    # Cleaning up as AWS requires: the profile, the key, then the user.
    s.cli(root, "iam", "update-login-profile", "--user-name", name, "--no-password-reset-required")
    s.cli(root, "iam", "delete-login-profile", "--user-name", name)
    e = s.cli_error(root, "iam", "delete-login-profile", "--user-name", name)
    assert e.code == "NoSuchEntity", e
    s.cli(root, "iam", "delete-access-key", "--user-name", name, "--access-key-id", key["AccessKeyId"])
    s.cli(root, "iam", "delete-user", "--user-name", name)
