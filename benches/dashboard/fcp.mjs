// First contentful paint of a dashboard page in headless Chromium.
//
//   NODE_PATH=$(bash scripts/browser-env.sh) node benches/dashboard/fcp.mjs URL \
//     [--runs N] [--token TOKEN] [--warm]
//
// Loads URL N times (default 10, or SLUICE_FCP_RUNS), each in a fresh
// browser context (its own cache and cookies: a cold load) unless --warm
// (one context, so the second load on reuses cached assets), in Debian's
// /usr/bin/chromium driven by playwright-core (scripts/install-deps.sh
// installs both; no browser is downloaded), at 1280×800. With --token it
// first signs in through POST /login in that context, as a person would,
// and measures the page with the session cookie. Prints one JSON object on
// stdout: FCP (performance.getEntriesByName('first-contentful-paint'))
// median, p90, min and max in ms; the document's and its subresources'
// bytes (styles, scripts, images; not what the live-update script fetches
// later) from the navigation and resource timing entries (transferred,
// encoded and decoded body), of the last load; the HTTP status. A load
// that ends on another page (/login, without --token) is an error. Exit 1 when a load fails or has no
// first contentful paint; 2 on usage errors or missing dependencies.
// `cargo bench --bench dashboard` runs it against its 10,000-gateway fleet.

import { createRequire } from 'node:module';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const CHROMIUM = '/usr/bin/chromium';

function usage(message) {
  console.error(`fcp: ${message}\nusage: node benches/dashboard/fcp.mjs URL [--runs N] [--token TOKEN] [--warm]`);
  process.exit(2);
}

function parse(argv) {
  const options = { runs: Number(process.env.SLUICE_FCP_RUNS || 10), token: null, warm: false, url: null };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--runs') options.runs = Number(argv[++i]);
    else if (arg === '--token') options.token = argv[++i];
    else if (arg === '--warm') options.warm = true;
    else if (arg.startsWith('--')) usage(`unknown option ${arg}`);
    else if (!options.url) options.url = arg;
    else usage(`one URL only (also got ${arg})`);
  }
  if (!options.url) usage('a URL is required');
  if (!Number.isInteger(options.runs) || options.runs < 1) usage('--runs takes a positive whole number');
  if (options.token === undefined) usage('--token takes a value');
  return options;
}

/// playwright-core from NODE_PATH, or from the cache install-deps.sh fills.
function playwright() {
  process.env.PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD = '1';
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
  const version = fs.readFileSync(path.join(root, 'tests/browser/playwright-core.version'), 'utf8').trim();
  const cache = path.join(
    process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'),
    'sluice', 'node', `playwright-core-${version}`, 'node_modules', 'x.js',
  );
  for (const from of [import.meta.url, cache]) {
    try {
      return createRequire(from)('playwright-core');
    } catch {
      // the next place
    }
  }
  console.error(`fcp: playwright-core ${version} is not installed; run bash scripts/install-deps.sh browser`);
  process.exit(2);
}

/// Nearest-rank percentile of sorted numbers.
function percentile(sorted, p) {
  return sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)];
}

const round = (ms) => Math.round(ms * 10) / 10;

async function signIn(context, base, token) {
  const response = await context.request.post(new URL('/login', base).href, {
    form: { token },
    headers: { origin: new URL(base).origin },
    maxRedirects: 0,
  });
  if (response.status() !== 303) {
    throw new Error(`POST /login answered ${response.status()}, not 303: is the token right?`);
  }
}

/// One load: FCP and the bytes the timing entries give.
async function load(context, url) {
  const page = await context.newPage();
  try {
    const response = await page.goto(url, { waitUntil: 'load', timeout: 60_000 });
    const status = response ? response.status() : null;
    if (!response || !response.ok()) throw new Error(`GET ${url} answered ${status}`);
    const landed = new URL(page.url());
    if (landed.pathname !== new URL(url).pathname) {
      throw new Error(`GET ${url} ended on ${landed.pathname}${landed.pathname === '/login' ? ': pass --token' : ''}`);
    }
    const measured = await page.evaluate(
      () =>
        new Promise((resolve) => {
          const done = (fcp) => {
            const nav = performance.getEntriesByType('navigation')[0];
            // What the page loads to show itself (styles, scripts, images),
            // not what the live-update script fetches afterwards.
            const resources = performance
              .getEntriesByType('resource')
              .filter((r) => !['fetch', 'xmlhttprequest', 'eventsource', 'other'].includes(r.initiatorType));
            const sum = (key) => resources.reduce((n, r) => n + (r[key] || 0), 0);
            resolve({
              fcp,
              document: {
                transferred: nav?.transferSize ?? 0,
                encoded: nav?.encodedBodySize ?? 0,
                decoded: nav?.decodedBodySize ?? 0,
              },
              resources: {
                count: resources.length,
                transferred: sum('transferSize'),
                encoded: sum('encodedBodySize'),
                decoded: sum('decodedBodySize'),
              },
              domContentLoaded: nav ? nav.domContentLoadedEventEnd : null,
            });
          };
          const now = performance.getEntriesByName('first-contentful-paint')[0];
          if (now) return done(now.startTime);
          const observer = new PerformanceObserver((list) => {
            const entry = list.getEntriesByName('first-contentful-paint')[0];
            if (entry) {
              observer.disconnect();
              done(entry.startTime);
            }
          });
          observer.observe({ type: 'paint', buffered: true });
          setTimeout(() => {
            observer.disconnect();
            done(null);
          }, 10_000);
        }),
    );
    if (measured.fcp === null) throw new Error(`${url}: no first-contentful-paint entry within 10 s of load`);
    return { status, ...measured };
  } finally {
    await page.close();
  }
}

async function main() {
  const options = parse(process.argv.slice(2));
  if (!fs.existsSync(CHROMIUM)) {
    console.error(`fcp: ${CHROMIUM} is missing (Debian package chromium); run bash scripts/install-deps.sh browser`);
    process.exit(2);
  }
  const { chromium } = playwright();
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true });
  const version = browser.version();
  const samples = [];
  try {
    const fresh = async () => {
      const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
      if (options.token) await signIn(context, options.url, options.token);
      return context;
    };
    let shared = options.warm ? await fresh() : null;
    for (let i = 0; i < options.runs; i++) {
      const context = shared ?? (await fresh());
      try {
        samples.push(await load(context, options.url));
      } finally {
        if (!shared) await context.close();
      }
    }
    await shared?.close();
    shared = null;
  } finally {
    await browser.close().catch(() => {});
  }
  const fcps = samples.map((s) => s.fcp).sort((a, b) => a - b);
  const last = samples.at(-1);
  const median = (values) => percentile([...values].sort((a, b) => a - b), 50);
  const result = {
    url: options.url,
    runs: options.runs,
    cache: options.warm ? 'warm' : 'cold',
    browser: `chromium ${version}`,
    status: last.status,
    fcpMs: {
      median: round(percentile(fcps, 50)),
      p90: round(percentile(fcps, 90)),
      min: round(fcps[0]),
      max: round(fcps.at(-1)),
      samples: samples.map((s) => round(s.fcp)),
    },
    domContentLoadedMs: { median: round(median(samples.map((s) => s.domContentLoaded ?? 0))) },
    bytes: {
      document: last.document,
      resources: last.resources,
      transferred: last.document.transferred + last.resources.transferred,
    },
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

main().catch((error) => {
  console.error(`fcp: ${error.message}`);
  process.exit(1);
});
