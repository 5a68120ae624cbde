# What a Python agent typically does, used to choose the Strict seccomp
# baseline (see measure.sh) and to prove it usable (seccomp_enforce_test).
# Exits 0 when every step worked.
import asyncio
import concurrent.futures
import hashlib
import http.client
import http.server
import json
import os
import random
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zlib


def square(x):
    return x * x


work = tempfile.mkdtemp(prefix="stockade-agent-", dir="/tmp")
try:
    # Files: write, read, rename, list, stat, remove.
    path = os.path.join(work, "notes.json")
    with open(path, "w") as f:
        json.dump({"task": "summarise", "n": [1, 2, 3]}, f)
    os.rename(path, path + ".done")
    with open(path + ".done") as f:
        assert json.load(f)["n"] == [1, 2, 3]
    os.makedirs(os.path.join(work, "a", "b"), exist_ok=True)
    assert "notes.json.done" in os.listdir(work)
    os.stat(work)
    shutil.copy(path + ".done", os.path.join(work, "a", "copy.json"))

    # Compute: hashing, compression, regexes, randomness, sqlite.
    data = os.urandom(4096) + random.randbytes(16)
    assert zlib.decompress(zlib.compress(data)) == data
    hashlib.sha256(data).hexdigest()
    assert re.findall(r"\d+", "a1b22c333") == ["1", "22", "333"]
    db = sqlite3.connect(os.path.join(work, "db.sqlite"))
    db.execute("create table t (x)")
    db.execute("insert into t values (42)")
    db.commit()
    assert db.execute("select x from t").fetchone()[0] == 42
    db.close()

    # Processes: run an allowed program, capture its output.
    out = subprocess.run(["/bin/ls", work], capture_output=True, check=True)
    assert b"notes.json.done" in out.stdout
    out = subprocess.run(["/bin/sh", "-c", "echo hi"], capture_output=True,
                         check=True)
    assert out.stdout == b"hi\n"

    # Threads and a thread pool.
    results = []
    threads = [threading.Thread(target=lambda i=i: results.append(i * i))
               for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [0, 1, 4, 9]
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as ex:
        assert list(ex.map(lambda x: x + 1, range(3))) == [1, 2, 3]

    # A process pool (fork, semaphores in /dev/shm, pipes).
    with concurrent.futures.ProcessPoolExecutor(max_workers=2) as ex:
        assert list(ex.map(square, range(4))) == [0, 1, 4, 9]

    # Name resolution from /etc/hosts.
    socket.getaddrinfo("localhost", 80, proto=socket.IPPROTO_TCP)

    # TCP on loopback: a plain socket pair and an HTTP request.
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    cli = socket.create_connection(srv.getsockname(), timeout=5)
    conn, _ = srv.accept()
    cli.sendall(b"ping")
    assert conn.recv(4) == b"ping"
    for s in (conn, cli, srv):
        s.close()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"ok": True}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    th = threading.Thread(target=httpd.serve_forever, daemon=True)
    th.start()
    url = "http://127.0.0.1:%d/" % httpd.server_address[1]
    with urllib.request.urlopen(url, timeout=5) as r:
        assert json.loads(r.read())["ok"] is True
    conn = http.client.HTTPConnection("127.0.0.1", httpd.server_address[1],
                                      timeout=5)
    conn.request("GET", "/")
    assert conn.getresponse().status == 200
    conn.close()
    httpd.shutdown()
    httpd.server_close()

    # asyncio: a TCP echo server and client, a subprocess, a sleep.
    async def main():
        async def echo(reader, writer):
            writer.write(await reader.readline())
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"hello\n")
        await writer.drain()
        assert await reader.readline() == b"hello\n"
        writer.close()
        server.close()
        await server.wait_closed()
        proc = await asyncio.create_subprocess_exec(
            "/bin/echo", "x", stdout=asyncio.subprocess.PIPE)
        assert (await proc.communicate())[0] == b"x\n"
        await asyncio.sleep(0.01)

    asyncio.run(main())
    time.sleep(0.01)
finally:
    shutil.rmtree(work)
print("agent workload ok")
sys.exit(0)
