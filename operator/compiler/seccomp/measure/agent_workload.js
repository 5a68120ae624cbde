// What a Node.js agent typically does, used to choose the Strict seccomp
// baseline (see measure.sh) and to prove it usable (seccomp_enforce_test).
// Exits 0 when every step worked.
'use strict';
const assert = require('assert');
const childProcess = require('child_process');
const crypto = require('crypto');
const dns = require('dns');
const fs = require('fs');
const http = require('http');
const os = require('os');
const path = require('path');
const zlib = require('zlib');
const {Worker} = require('worker_threads');

async function main() {
  // Files: write, read, rename, list, stat, remove (sync and async).
  const work = fs.mkdtempSync(path.join('/tmp', 'stockade-agent-'));
  try {
    const file = path.join(work, 'notes.json');
    fs.writeFileSync(file, JSON.stringify({task: 'summarise', n: [1, 2, 3]}));
    fs.renameSync(file, file + '.done');
    assert.deepStrictEqual(
        JSON.parse(await fs.promises.readFile(file + '.done', 'utf8')).n,
        [1, 2, 3]);
    await fs.promises.mkdir(path.join(work, 'a', 'b'), {recursive: true});
    assert.ok(fs.readdirSync(work).includes('notes.json.done'));
    fs.statSync(work);
    fs.copyFileSync(file + '.done', path.join(work, 'a', 'copy.json'));

    // Compute: hashing, compression, randomness.
    const data = crypto.randomBytes(4096);
    assert.ok(zlib.gunzipSync(zlib.gzipSync(data)).equals(data));
    crypto.createHash('sha256').update(data).digest('hex');
    os.cpus();

    // Processes: run allowed programs.
    assert.strictEqual(
        childProcess.execFileSync('/bin/echo', ['hi']).toString(), 'hi\n');
    assert.strictEqual(childProcess.execSync('echo hi').toString(), 'hi\n');
    await new Promise((resolve, reject) => {
      const p = childProcess.spawn('/bin/ls', [work]);
      let out = '';
      p.stdout.on('data', (d) => out += d);
      p.on('close', (code) => code === 0 && out.includes('notes.json.done') ?
                       resolve() :
                       reject(new Error('ls failed')));
    });

    // A worker thread.
    const squared = await new Promise((resolve, reject) => {
      const w = new Worker(
          'const {parentPort} = require("worker_threads");' +
              'parentPort.on("message", (x) => parentPort.postMessage(x * x));',
          {eval: true});
      w.on('message', (v) => {
        w.terminate();
        resolve(v);
      });
      w.on('error', reject);
      w.postMessage(7);
    });
    assert.strictEqual(squared, 49);

    // Name resolution from /etc/hosts.
    await dns.promises.lookup('localhost');

    // HTTP client to a server on loopback.
    const server = http.createServer((req, res) => {
      res.setHeader('Content-Type', 'application/json');
      res.end(JSON.stringify({ok: true}));
    });
    await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = server.address().port;
    const body = await new Promise((resolve, reject) => {
      http.get({host: '127.0.0.1', port, path: '/'}, (res) => {
            let b = '';
            res.on('data', (d) => b += d);
            res.on('end', () => resolve(b));
          }).on('error', reject);
    });
    assert.strictEqual(JSON.parse(body).ok, true);
    if (typeof fetch === 'function') {
      const r = await fetch(`http://127.0.0.1:${port}/`);
      assert.strictEqual((await r.json()).ok, true);
    }
    await new Promise((resolve) => server.close(resolve));
    await new Promise((resolve) => setTimeout(resolve, 10));
  } finally {
    fs.rmSync(work, {recursive: true, force: true});
  }
  console.log('agent workload ok');
}

main().then(() => process.exit(0), (e) => {
  console.error(e);
  process.exit(1);
});
