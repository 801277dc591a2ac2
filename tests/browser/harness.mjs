// The browser tests' harness: a real `sluice run` over a real git
// repository, with reference gateways (`sluice gateway`) behind the
// environments a test edits by hand, and headless Debian chromium driven by
// playwright-core. It builds nothing: the binary is $SLUICE_BIN (default
// target/debug/sluice; scripts/browser-test.sh builds it). Everything a
// scenario starts is killed, and its temp dir removed, by `stop()`
// (SLUICE_KEEP_TMP=1 keeps the dir). Every wait polls with a deadline.
//
// playwright-core is loaded from NODE_PATH or from the cache that
// scripts/install-deps.sh fills (keyed by playwright-core.version). Missing,
// the tests skip saying why, except under CI=true, where they fail.

import { spawn, execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import zlib from 'node:zlib';

const here = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(here, '../..');
export const CHROMIUM = '/usr/bin/chromium';
export const VIEWPORT = { width: 1280, height: 800 };

/// The operator's allowances, as tests/it's OPERATOR: loopback gateways
/// everywhere, production's PROD_* variables.
export const OPERATOR = {
  SLUICE_ALLOW_URL: '*=http://127.0.0.1:*',
  SLUICE_ALLOW_ENV: 'production=PROD_*',
};

/// The dashboard's tokens: an admin and a development one.
export const TOKENS = { admin: 'adm-secret', development: 'dev-secret' };
const API_TOKENS = `admin:${TOKENS.admin},development:${TOKENS.development}`;

/// The production gateways' bearer (the reference gateways check it).
const GATEWAY_TOKEN_ENV = 'PROD_GATEWAY_TOKEN';
const GATEWAY_TOKEN = 'prod-gw-token-7c1e';

/// Where a setting a hand edit changes lives in the rendered document.
export const ACTION = '/packs/baseline/settings/pii-detector/action';

// --- playwright-core --------------------------------------------------------

export const PLAYWRIGHT_VERSION = fs
  .readFileSync(path.join(here, 'playwright-core.version'), 'utf8')
  .trim();

export function playwrightCache() {
  const cache = process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache');
  return path.join(cache, 'sluice', 'node', `playwright-core-${PLAYWRIGHT_VERSION}`, 'node_modules');
}

function loadPlaywright() {
  process.env.PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD = '1';
  const tried = [];
  // NODE_PATH first (a plain require honours it), then the cache.
  for (const from of [import.meta.url, path.join(playwrightCache(), 'x.js')]) {
    try {
      return { playwright: createRequire(from)('playwright-core') };
    } catch (error) {
      tried.push(error.code === 'MODULE_NOT_FOUND' ? 'not found' : error.message);
    }
  }
  return {
    reason:
      `playwright-core ${PLAYWRIGHT_VERSION} is not installed (NODE_PATH: ${tried[0]}; ` +
      `${playwrightCache()}: ${tried[1]}); run bash scripts/install-deps.sh browser`,
  };
}

function missingDependency() {
  const loaded = loadPlaywright();
  if (loaded.reason) return { reason: loaded.reason };
  if (!fs.existsSync(CHROMIUM)) {
    return { reason: `${CHROMIUM} is missing (Debian package chromium); run bash scripts/install-deps.sh browser` };
  }
  const bin = sluiceBin();
  if (!fs.existsSync(bin)) {
    return { reason: `no sluice binary at ${bin}; run cargo build --bin sluice or set SLUICE_BIN` };
  }
  return { playwright: loaded.playwright };
}

const found = missingDependency();

/// `{ skip }` for `describe`: false when everything is there; the reason
/// otherwise (printed by the runner). Under CI=true a missing dependency
/// is a failure instead: `requireDeps()` throws.
export const SKIP = found.reason && process.env.CI !== 'true' ? found.reason : false;
if (SKIP) console.error(`browser tests skipped: ${SKIP}`);

export function requireDeps() {
  if (found.reason) throw new Error(`browser tests cannot run: ${found.reason}`);
  return found.playwright;
}

/// Headless Debian chromium; never a browser playwright downloads.
export async function launch() {
  const { chromium } = requireDeps();
  return chromium.launch({ executablePath: CHROMIUM, headless: true });
}

/// A fresh context (own cookies) at the screenshots' viewport.
export async function newContext(browser, options = {}) {
  return browser.newContext({ viewport: VIEWPORT, ...options });
}

// --- processes --------------------------------------------------------------

/// The environment of a `sluice` child: ours with the operator's
/// allowances, without anything that would choose a repository or data dir.
function childEnv(env) {
  const all = { ...process.env, ...OPERATOR, ...env };
  for (const name of ['SLUICE_REPO', 'SLUICE_DATA_DIR', 'SLUICE_STATE']) delete all[name];
  return all;
}

export function sluiceBin() {
  return path.resolve(ROOT, process.env.SLUICE_BIN || 'target/debug/sluice');
}

/// A long-running `sluice` command that prints `listening on ADDR`:
/// resolves once it did, with `url` = `http://ADDR`.
export function spawnListening(args, env = {}, { timeout = 30_000 } = {}) {
  const child = spawn(sluiceBin(), args, {
    env: childEnv(env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const proc = { child, args, stdout: '', stderr: '', url: null, exited: null };
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk) => {
    proc.stderr = (proc.stderr + chunk).slice(-200_000);
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`sluice ${args.join(' ')} printed no "listening on" line within ${timeout} ms:\n${proc.stderr}`));
    }, timeout);
    child.stdout.on('data', (chunk) => {
      proc.stdout = (proc.stdout + chunk).slice(-200_000);
      const match = /^listening on (\S+)$/m.exec(proc.stdout);
      if (match && !proc.url) {
        proc.url = `http://${match[1]}`;
        clearTimeout(timer);
        resolve(proc);
      }
    });
    child.on('exit', (code, signal) => {
      proc.exited = { code, signal };
      if (!proc.url) {
        clearTimeout(timer);
        reject(new Error(`sluice ${args.join(' ')} exited (${code ?? signal}) before listening:\n${proc.stderr}`));
      }
    });
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
}

/// SIGTERM, then SIGKILL when it has not exited within `grace` ms.
export async function terminate(proc, grace = 5_000) {
  if (!proc || proc.exited) return;
  const done = new Promise((resolve) => proc.child.once('exit', resolve));
  proc.child.kill('SIGTERM');
  const timer = setTimeout(() => proc.child.kill('SIGKILL'), grace);
  await done;
  clearTimeout(timer);
}

/// Polls `check` (sync or async; a truthy result ends the wait and is
/// returned) every `every` ms until `timeout` ms have passed; then throws
/// naming `what` and the last error or value seen.
export async function eventually(what, check, { timeout = 30_000, every = 100 } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
      last = value;
    } catch (error) {
      last = error;
    }
    if (Date.now() >= deadline) {
      const detail = last instanceof Error ? last.message : JSON.stringify(last);
      throw new Error(`timed out after ${timeout} ms waiting for ${what} (last: ${detail})`);
    }
    await new Promise((resolve) => setTimeout(resolve, every));
  }
}

/// `fetch` with a timeout; `{ status, headers, text, json() }`.
export async function http(method, url, { headers = {}, body, redirect = 'manual', timeout = 10_000 } = {}) {
  const response = await fetch(url, {
    method,
    headers,
    body,
    redirect,
    signal: AbortSignal.timeout(timeout),
  });
  const text = await response.text();
  return {
    status: response.status,
    headers: response.headers,
    text,
    json: () => JSON.parse(text),
  };
}

export const bearer = (token) => ({ authorization: `Bearer ${token}` });

// --- repositories -----------------------------------------------------------

export function git(dir, args) {
  return execFileSync(
    'git',
    ['-c', 'user.name=Sluice Browser Test', '-c', 'user.email=browser@sluice.dev', '-c', 'commit.gpgsign=false', ...args],
    { cwd: dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] },
  );
}

export function write(dir, file, content) {
  const target = path.join(dir, file);
  fs.mkdirSync(path.dirname(target), { recursive: true });
  fs.writeFileSync(target, content);
}

/// Commits everything in `dir`; returns the commit id.
export function commit(dir, message) {
  git(dir, ['add', '-A']);
  git(dir, ['commit', '-q', '--allow-empty', '-m', message]);
  return git(dir, ['rev-parse', 'HEAD']).trim();
}

/// Runs `sluice ARGS` to completion; `{ code, stdout, stderr }`.
export function sluice(args, env = {}) {
  try {
    const stdout = execFileSync(sluiceBin(), args, {
      env: childEnv(env),
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      maxBuffer: 256 * 1024 * 1024,
    });
    return { code: 0, stdout, stderr: '' };
  } catch (error) {
    if (typeof error.status !== 'number') throw error;
    return { code: error.status, stdout: error.stdout, stderr: error.stderr };
  }
}

// --- a scenario ----------------------------------------------------------------

/// What one scenario started, stopped together.
class Scenario {
  constructor(name) {
    this.tmp = fs.mkdtempSync(path.join(os.tmpdir(), `sluice-browser-${name}-`));
    this.repo = path.join(this.tmp, 'repo');
    this.data = path.join(this.tmp, 'data');
    this.processes = [];
    this.env = {};
    fs.mkdirSync(this.repo);
    git(this.repo, ['init', '-q', '-b', 'main']);
  }

  async gateway(args, env = {}) {
    const proc = await spawnListening(['gateway', '--listen', '127.0.0.1:0', ...args], env);
    this.processes.push(proc);
    return proc;
  }

  /// `sluice run` on the repository, ready (`/readyz` 200).
  async run({ interval = '1s', timeout = 60_000 } = {}) {
    this.server = await spawnListening(
      [
        'run',
        '--repo', this.repo,
        '--branch', 'main',
        '--data-dir', this.data,
        '--listen', '127.0.0.1:0',
        '--interval', interval,
      ],
      { SLUICE_API_TOKENS: API_TOKENS, ...this.env },
    );
    this.processes.push(this.server);
    this.url = this.server.url;
    await eventually(
      'sluice run to be ready (/readyz 200)',
      async () => {
        if (this.server.exited) {
          throw new Error(`sluice run exited (${JSON.stringify(this.server.exited)}):\n${this.server.stderr}`);
        }
        return (await http('GET', `${this.url}/readyz`)).status === 200;
      },
      { timeout },
    );
    return this.server;
  }

  /// The status matrix as the API gives it, seen by the admin token.
  async status() {
    const response = await http('GET', `${this.url}/api/v1/status`, { headers: bearer(TOKENS.admin) });
    if (response.status !== 200) throw new Error(`/api/v1/status: ${response.status} ${response.text}`);
    return response.json();
  }

  /// `[environment, gateway, state]` for every gateway of the status matrix.
  async states() {
    const status = await this.status();
    return status.gateways.map((g) => [g.environment, g.gateway, g.state]);
  }

  /// Waits until every gateway of the status matrix is in `wanted` (the
  /// first pass over the repository is over).
  async settled({ wanted = ['in-sync'], timeout = 60_000, count } = {}) {
    return eventually(
      `every gateway ${wanted.join(' or ')}${count ? ` (${count} of them)` : ''}`,
      async () => {
        const states = await this.states();
        const ok = states.length > 0 && (!count || states.length >= count) && states.every(([, , s]) => wanted.includes(s));
        return ok ? states : false;
      },
      { timeout, every: 250 },
    ).catch(async (error) => {
      const states = await this.states().catch((e) => e.message);
      throw new Error(`${error.message}\nstatus: ${JSON.stringify(states)}\nsluice run stderr:\n${this.server?.stderr.slice(-4000)}`);
    });
  }

  /// `sluice render ENV -o json` at HEAD: `[{gateway, digest, config, ...}]`.
  render(environment) {
    const run = sluice(['render', environment, '--rev', 'HEAD', '-o', 'json', '--repo', this.repo]);
    if (run.code !== 0) throw new Error(`sluice render ${environment}: ${run.stderr}`);
    return JSON.parse(run.stdout);
  }

  head() {
    return git(this.repo, ['rev-parse', 'HEAD']).trim();
  }

  async stop() {
    await Promise.all(this.processes.map((p) => terminate(p)));
    if (process.env.SLUICE_KEEP_TMP === '1') {
      console.error(`kept ${this.tmp}`);
    } else {
      fs.rmSync(this.tmp, { recursive: true, force: true });
    }
  }
}

function copyTree(from, to) {
  fs.cpSync(from, to, { recursive: true });
}

/// The bundled example (development, staging, production, eval) in a real
/// repository, with:
/// * production's two gateways turned into `http` gateways on two reference
///   gateways (bearer-protected), drift read back every second and only
///   detected (`policy: detect`, never healed), so a hand edit through
///   `PUT /admin/v1/config` stays visible as drift; its alert webhook is
///   dropped (detect never alerts);
/// * the eval environment's file run by a reference gateway (`--watch`),
///   its `chat:` pointing there, so its suites pass;
/// * development and staging on `file` gateways as in the example.
/// `sluice run` follows it, ready and settled.
export async function exampleScenario() {
  const scenario = new Scenario('example');
  try {
    copyTree(path.join(ROOT, 'examples/config-repo'), scenario.repo);
    const env = { [GATEWAY_TOKEN_ENV]: GATEWAY_TOKEN };
    scenario.env = env;
    scenario.gateways = {};
    const production = ['prod-eu-1', 'prod-us-1'];
    let yaml = 'gateways:\n';
    for (const name of production) {
      const gw = await scenario.gateway(['--ephemeral', '--token-env', GATEWAY_TOKEN_ENV], env);
      scenario.gateways[`production/${name}`] = gw;
      yaml += `  - name: ${name}\n    driver: http\n    url: ${gw.url}\n    tokenEnv: ${GATEWAY_TOKEN_ENV}\n    timeout: 2s\n`;
    }
    write(scenario.repo, 'environments/production/gateways.yaml', yaml);

    const spec = path.join(scenario.repo, 'environments/production/environment.yaml');
    const edited = fs
      .readFileSync(spec, 'utf8')
      .replace(/interval: 1m/, 'interval: 1s')
      .replace(/policy: heal\b/, 'policy: detect')
      .replace(/\nalerts:\n(?:[ #].*\n)*/, '\n');
    if (!edited.includes('policy: detect') || !edited.includes('interval: 1s') || edited.includes('alerts:')) {
      throw new Error(`the example's production environment.yaml changed shape:\n${edited}`);
    }
    fs.writeFileSync(spec, edited);

    const evalFile = path.join(scenario.data, 'gateways/eval/eval-1.json');
    const evalGateway = await scenario.gateway(['--ephemeral', '--watch', evalFile]);
    scenario.gateways['eval/eval-1'] = evalGateway;
    const evalGateways = path.join(scenario.repo, 'environments/eval/gateways.yaml');
    const evalYaml = fs.readFileSync(evalGateways, 'utf8').replace('http://127.0.0.1:18490', evalGateway.url);
    if (!evalYaml.includes(evalGateway.url)) throw new Error(`the example's eval gateways.yaml changed shape:\n${evalYaml}`);
    fs.writeFileSync(evalGateways, evalYaml);

    scenario.commit = commit(scenario.repo, 'example, production on reference gateways');
    scenario.environments = ['development', 'staging', 'production', 'eval'];
    scenario.expected = {
      development: ['dev-1'],
      staging: ['staging-1'],
      production,
      eval: ['eval-1'],
    };
    await scenario.run();
    await scenario.settled();
  } catch (error) {
    await scenario.stop();
    throw error;
  }

  /// What a person does on a production gateway: the PII detector's
  /// action turned from `block` to `redact` in its running config.
  scenario.handEdit = async (name, { from = 'block', to = 'redact' } = {}) => {
    const gw = scenario.gateways[`production/${name}`];
    const headers = bearer(GATEWAY_TOKEN);
    const running = await http('GET', `${gw.url}/sluice/v1/config`, { headers });
    if (running.status !== 200) throw new Error(`GET ${gw.url}/sluice/v1/config: ${running.status} ${running.text}`);
    const config = running.json();
    const segments = ACTION.split('/').slice(1);
    const parent = segments.slice(0, -1).reduce((node, key) => node?.[key], config);
    const key = segments.at(-1);
    if (!parent || parent[key] !== from) {
      throw new Error(`${name} runs ${ACTION} = ${JSON.stringify(parent?.[key])}, not ${JSON.stringify(from)}`);
    }
    parent[key] = to;
    const put = await http('PUT', `${gw.url}/admin/v1/config`, {
      headers: { ...headers, 'content-type': 'application/json' },
      body: JSON.stringify(config),
    });
    if (put.status !== 200) throw new Error(`PUT ${gw.url}/admin/v1/config: ${put.status} ${put.text}`);
  };
  return scenario;
}

/// One environment (`fleet`) of `count` `file` gateways on the example's
/// base packs: its first pass writes `count` attempts into the ledger.
export async function fleetScenario({ count = 1000, environment = 'fleet' } = {}) {
  const scenario = new Scenario('fleet');
  try {
    const example = path.join(ROOT, 'examples/config-repo');
    write(scenario.repo, 'sluice.yaml', `promotion:\n  order: [${environment}]\n`);
    for (const pack of ['baseline', 'models']) {
      write(scenario.repo, `base/packs/${pack}.yaml`, fs.readFileSync(path.join(example, `base/packs/${pack}.yaml`), 'utf8'));
    }
    write(
      scenario.repo,
      `environments/${environment}/environment.yaml`,
      `slug: ${environment}\nname: Fleet\nenforcement: enforce\ndrift: { interval: 1h, policy: detect }\n`,
    );
    let yaml = 'gateways:\n';
    for (let g = 0; g < count; g++) {
      const name = `gw-${String(g).padStart(4, '0')}`;
      yaml += `  - name: ${name}\n    driver: file\n    path: gateways/${environment}/${name}.json\n`;
    }
    write(scenario.repo, `environments/${environment}/gateways.yaml`, yaml);
    scenario.commit = commit(scenario.repo, `${count} file gateways`);
    scenario.environment = environment;
    scenario.count = count;
    await scenario.run({ interval: '1h', timeout: 120_000 });
    await scenario.settled({ count, timeout: 180_000 });
  } catch (error) {
    await scenario.stop();
    throw error;
  }
  return scenario;
}

// --- the dashboard ------------------------------------------------------------

/// Signs in through the form at /login with `token`; the page ends on `/`
/// (the form posts, the server answers 303 to `/`).
export async function signIn(page, base, token) {
  await page.goto(`${base}/login`);
  await page.fill('form[action="/login"] input[name="token"]', token);
  await Promise.all([
    page.waitForURL(`${base}/`, { timeout: 10_000 }),
    page.click('form[action="/login"] [type="submit"]'),
  ]);
}

/// `sha256:<12 hex>@<8 hex>` for a digest and a commit.
export function version(digest, commitId) {
  return `${digest.slice(0, 'sha256:'.length + 12)}@${commitId.slice(0, 8)}`;
}

// --- screenshots ----------------------------------------------------------------

export const SHOTS = path.join(ROOT, 'target', 'browser');
const TOLERANCE = Number(process.env.SLUICE_SCREENSHOT_TOLERANCE ?? '0.01');

/// Takes a 1280×800 screenshot of `page` into target/browser/NAME.png and
/// compares it with docs/NAME.png, ignoring what changes from run to run
/// (times, ages, versions, the live-status line). The docs copy is written
/// when there is none or with SLUICE_UPDATE_SCREENSHOTS=1; otherwise a
/// difference in more than SLUICE_SCREENSHOT_TOLERANCE (default 1 %) of the
/// other pixels fails, naming both files.
export async function screenshot(page, name) {
  fs.mkdirSync(SHOTS, { recursive: true });
  await page.evaluate(() => document.fonts && document.fonts.ready);
  const volatile = await page.$$eval('time, code.version, #live, [data-volatile]', (nodes) =>
    nodes
      .map((n) => n.getBoundingClientRect())
      .filter((r) => r.width > 0 && r.height > 0)
      .map((r) => ({ x: r.x, y: r.y, width: r.width, height: r.height })),
  );
  const actual = path.join(SHOTS, `${name}.png`);
  const png = await page.screenshot({ path: actual, animations: 'disabled', caret: 'hide' });
  const reference = path.join(ROOT, 'docs', `${name}.png`);
  if (process.env.SLUICE_UPDATE_SCREENSHOTS === '1' || !fs.existsSync(reference)) {
    fs.copyFileSync(actual, reference);
    console.error(`screenshot ${name}: wrote ${path.relative(ROOT, reference)}`);
    return { written: reference };
  }
  const ratio = difference(decodePng(fs.readFileSync(reference)), decodePng(png), volatile);
  console.error(`screenshot ${name}: ${(ratio * 100).toFixed(3)} % of the pixels differ from ${path.relative(ROOT, reference)}`);
  if (ratio > TOLERANCE) {
    throw new Error(
      `${name}: ${(ratio * 100).toFixed(2)} % of the pixels differ from ${path.relative(ROOT, reference)} ` +
        `(tolerance ${(TOLERANCE * 100).toFixed(2)} %); see ${path.relative(ROOT, actual)}, ` +
        `and run with SLUICE_UPDATE_SCREENSHOTS=1 to accept it`,
    );
  }
  return { ratio };
}

/// The share of pixels outside `ignore` (CSS-pixel rectangles) that differ
/// by more than a little in any channel; 1 when the sizes differ.
export function difference(a, b, ignore = []) {
  if (a.width !== b.width || a.height !== b.height) return 1;
  const masked = new Uint8Array(a.width * a.height);
  for (const r of ignore) {
    const x0 = Math.max(0, Math.floor(r.x) - 2);
    const y0 = Math.max(0, Math.floor(r.y) - 2);
    const x1 = Math.min(a.width, Math.ceil(r.x + r.width) + 2);
    const y1 = Math.min(a.height, Math.ceil(r.y + r.height) + 2);
    for (let y = y0; y < y1; y++) masked.fill(1, y * a.width + x0, y * a.width + x1);
  }
  let differing = 0;
  let counted = 0;
  for (let i = 0; i < masked.length; i++) {
    if (masked[i]) continue;
    counted++;
    const p = i * 4;
    for (let c = 0; c < 3; c++) {
      if (Math.abs(a.pixels[p + c] - b.pixels[p + c]) > 16) {
        differing++;
        break;
      }
    }
  }
  return counted ? differing / counted : 0;
}

/// A non-interlaced 8-bit RGB or RGBA PNG (what chromium writes) as RGBA.
export function decodePng(buffer) {
  if (buffer.readUInt32BE(0) !== 0x89504e47) throw new Error('not a PNG');
  let offset = 8;
  let width, height, depth, type, interlace;
  const data = [];
  while (offset < buffer.length) {
    const length = buffer.readUInt32BE(offset);
    const kind = buffer.toString('ascii', offset + 4, offset + 8);
    const body = buffer.subarray(offset + 8, offset + 8 + length);
    if (kind === 'IHDR') {
      width = body.readUInt32BE(0);
      height = body.readUInt32BE(4);
      depth = body[8];
      type = body[9];
      interlace = body[12];
    } else if (kind === 'IDAT') {
      data.push(body);
    } else if (kind === 'IEND') {
      break;
    }
    offset += 12 + length;
  }
  const channels = { 2: 3, 6: 4 }[type];
  if (depth !== 8 || !channels || interlace) throw new Error(`unsupported PNG (depth ${depth}, type ${type}, interlace ${interlace})`);
  const raw = zlib.inflateSync(Buffer.concat(data));
  const stride = width * channels;
  const rows = Buffer.alloc(stride * height);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)];
    const line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    const out = rows.subarray(y * stride, (y + 1) * stride);
    const prev = y ? rows.subarray((y - 1) * stride, y * stride) : null;
    for (let x = 0; x < stride; x++) {
      const left = x >= channels ? out[x - channels] : 0;
      const up = prev ? prev[x] : 0;
      const corner = prev && x >= channels ? prev[x - channels] : 0;
      let value = line[x];
      switch (filter) {
        case 0: break;
        case 1: value += left; break;
        case 2: value += up; break;
        case 3: value += (left + up) >> 1; break;
        case 4: {
          const p = left + up - corner;
          const pa = Math.abs(p - left);
          const pb = Math.abs(p - up);
          const pc = Math.abs(p - corner);
          value += pa <= pb && pa <= pc ? left : pb <= pc ? up : corner;
          break;
        }
        default: throw new Error(`bad PNG filter ${filter}`);
      }
      out[x] = value & 0xff;
    }
  }
  const pixels = new Uint8Array(width * height * 4);
  for (let i = 0, j = 0; i < width * height; i++, j += channels) {
    pixels[i * 4] = rows[j];
    pixels[i * 4 + 1] = rows[j + 1];
    pixels[i * 4 + 2] = rows[j + 2];
    pixels[i * 4 + 3] = channels === 4 ? rows[j + 3] : 255;
  }
  return { width, height, pixels };
}

/// A new context (1280×800, JavaScript on unless `javaScriptEnabled:
/// false`) and page signed in with `token`; `{ context, page }`.
export async function signedIn(browser, base, token, options = {}) {
  const context = await newContext(browser, options);
  const page = await context.newPage();
  await signIn(page, base, token);
  return { context, page };
}

/// A commit on a branch other than the followed one (made in a worktree
/// of its own, so the followed branch and its checkout never move), after
/// `edit(dir)` changed files there; returns the commit id.
export function sideCommit(scenario, branch, edit, message) {
  const dir = path.join(scenario.tmp, `side-${branch}`);
  git(scenario.repo, ['worktree', 'add', '-q', '-b', branch, dir, 'main']);
  edit(dir);
  return commit(dir, message);
}
