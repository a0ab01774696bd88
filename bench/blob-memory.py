#!/usr/bin/env python3
"""Peak resident memory of one berth binary while a 1 GiB blob is pushed (one streamed
PATCH of 8 MiB chunks, then PUT) and pulled back over /v2 on loopback.

    bench/blob-memory.py BERTH_BINARY EMPTY_DATA_DIR [CONFIG_FILE]

With CONFIG_FILE (e.g. metadata_url and blob_url of a scale-out node), the server runs with
--config CONFIG_FILE (S3 credentials from BERTH_S3_* in the environment). Prints the peak VmRSS (sampled every 20 ms) of each phase. Needs the aws CLI and requests."""
import base64, hashlib, json, os, subprocess, sys, threading, time, re, requests
BIN = sys.argv[1]; data_dir = sys.argv[2]
config = ["--config", sys.argv[3]] if len(sys.argv) > 3 else []
p = subprocess.Popen([BIN, "serve", "--data-dir", data_dir, "--listen", "127.0.0.1:0", *config], stderr=subprocess.PIPE, text=True)
port = None
for line in p.stderr:
    m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
    if m: port = int(m.group(1)); break
threading.Thread(target=lambda: [None for _ in p.stderr], daemon=True).start()
root = json.load(open(f"{data_dir}/root-credentials.json"))
env = {**os.environ, "AWS_ACCESS_KEY_ID": root["access_key_id"], "AWS_SECRET_ACCESS_KEY": root["secret_access_key"], "AWS_DEFAULT_REGION": "us-east-1"}
E = ["aws", "--endpoint-url", f"http://127.0.0.1:{port}"]
subprocess.run(E + ["ecr", "create-repository", "--repository-name", "mem"], env=env, check=True, capture_output=True)
pw = subprocess.run(E + ["ecr", "get-login-password"], env=env, check=True, capture_output=True, text=True).stdout.strip()
auth = {"Authorization": "Basic " + base64.b64encode(f"AWS:{pw}".encode()).decode()}
peak = [0]; stop = False
def watch():
    while not stop:
        for l in open(f"/proc/{p.pid}/status"):
            if l.startswith("VmRSS:"): peak[0] = max(peak[0], int(l.split()[1]))
        time.sleep(0.02)
threading.Thread(target=watch, daemon=True).start()
base = f"http://127.0.0.1:{port}"
SIZE = 1 << 30; CH = 8 << 20
chunk = os.urandom(CH)
h = hashlib.sha256()
def gen():
    for i in range(SIZE // CH):
        h.update(chunk); yield chunk
r = requests.post(base + "/v2/mem/blobs/uploads/", headers=auth); loc = r.headers["Location"]
loc = loc if loc.startswith("http") else base + loc
r = requests.patch(loc, data=gen(), headers={**auth, "Content-Type": "application/octet-stream"})
assert r.status_code == 202, r.text
loc = r.headers["Location"]; loc = loc if loc.startswith("http") else base + loc
d = "sha256:" + h.hexdigest()
r = requests.put(loc, params={"digest": d}, headers=auth); assert r.status_code == 201, r.text
print("push peak RSS MiB", peak[0] / 1024)
peak[0] = 0
r = requests.get(base + f"/v2/mem/blobs/{d}", headers=auth, stream=True)
n = sum(len(c) for c in r.iter_content(1 << 20))
print("pull peak RSS MiB", peak[0] / 1024, n)
stop = True
p.terminate(); p.wait()
