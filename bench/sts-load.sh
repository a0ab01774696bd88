#!/usr/bin/env bash
# Load: signed STS GetCallerIdentity requests per second against `berth serve` on
# loopback, with wrk. The request is signed once (SigV4, by botocore) with an IAM user's
# key and sent over and over: the server verifies the signature, looks the key up and
# answers each time (signatures stay valid for the 15-minute skew window).
#
#   bench/sts-load.sh [DURATION_SECONDS] [CONNECTIONS] [THREADS]
#   PEER=moto bench/sts-load.sh ...   # the same load against moto_server (a Python
#                                     # implementation of the same APIs), for comparison
#
# Needs: target/release/berth (cargo build --release), wrk, python3 with boto3
# (and moto[server] for PEER=moto).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-20}
CONNS=${2:-32}
THREADS=${3:-1}
BIN=${BERTH_BIN:-target/release/berth}
DIR=$(mktemp -d)
trap 'kill $PID 2>/dev/null || true; wait $PID 2>/dev/null || true; rm -rf "$DIR"' EXIT

if [ "${PEER:-}" = moto ]; then
  PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  moto_server -H 127.0.0.1 -p "$PORT" >"$DIR/log" 2>&1 &
  PID=$!
  URL="http://127.0.0.1:$PORT"
  for _ in $(seq 200); do curl -s -o /dev/null "$URL/" && break; sleep 0.05; done
  printf '{"access_key_id": "AKIAMOTOMOTOMOTOMOTO", "secret_access_key": "moto"}' >"$DIR/root-credentials.json"
else
  "$BIN" serve --data-dir "$DIR" --listen 127.0.0.1:0 --audit-log off 2>"$DIR/log" &
  PID=$!
  for _ in $(seq 100); do grep -q "listening on" "$DIR/log" && break; sleep 0.05; done
  URL=$(grep -o 'http://127.0.0.1:[0-9]*' "$DIR/log" | head -1)
fi

python3 - "$DIR" "$URL" <<'PY'
import json, sys, boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
d, url = sys.argv[1], sys.argv[2]
root = json.load(open(f"{d}/root-credentials.json"))
iam = boto3.client("iam", endpoint_url=url, region_name="us-east-1",
                   aws_access_key_id=root["access_key_id"], aws_secret_access_key=root["secret_access_key"])
iam.create_user(UserName="bench")
key = iam.create_access_key(UserName="bench")["AccessKey"]
body = "Action=GetCallerIdentity&Version=2011-06-15"
req = AWSRequest(method="POST", url=url + "/", data=body,
                 headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
SigV4Auth(Credentials(key["AccessKeyId"], key["SecretAccessKey"]), "sts", "us-east-1").add_auth(req)
lua = ['wrk.method = "POST"', f'wrk.body = "{body}"']
for k, v in req.headers.items():
    if k.lower() == "host":
        continue
    lua.append(f'wrk.headers["{k}"] = "{v}"')
open(f"{d}/req.lua", "w").write("\n".join(lua) + "\n")
PY

# One request first: it must answer 200 with the user's ARN.
python3 - "$DIR/req.lua" "$URL" <<'PY'
import re, sys, urllib.request
lua = open(sys.argv[1]).read()
body = re.search(r'wrk.body = "(.*)"', lua).group(1).encode()
headers = dict(re.findall(r'wrk.headers\["(.*?)"\] = "(.*?)"', lua))
r = urllib.request.urlopen(urllib.request.Request(sys.argv[2] + "/", data=body, headers=headers))
text = r.read().decode()
assert r.status == 200 and ":user/bench" in text, text
PY
echo "== wrk -t$THREADS -c$CONNS -d${DURATION}s --latency (GetCallerIdentity, SigV4 verified per request)"
wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency -s "$DIR/req.lua" "$URL/"
