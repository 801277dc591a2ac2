// The overview against a real `sluice run` over the bundled example: every
// environment and gateway with the version `sluice render` says and the
// state the API says, the counts by state, links to each gateway's page,
// the same without JavaScript, and compare between two revisions.

import { describe, before, after, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { SKIP, TOKENS, exampleScenario, launch, newContext, screenshot, sideCommit, signIn, signedIn } from './harness.mjs';

const STATES = ['in-sync', 'drifted', 'pending', 'applying', 'failed', 'unreachable', 'gated', 'pinned'];
const VERSION = /^sha256:[0-9a-f]{12}@[0-9a-f]{8}$/;

describe('overview', { skip: SKIP }, () => {
  let scenario;
  let browser;

  before(async () => {
    scenario = await exampleScenario();
    browser = await launch();
  });

  after(async () => {
    await browser?.close();
    await scenario?.stop();
  });

  test('shows every environment and gateway with its version and state', async () => {
    const { context, page } = await signedIn(browser, scenario.url, TOKENS.admin);
    try {
      const response = await page.goto(`${scenario.url}/`);
      assert.equal(response.status(), 200);
      const rows = await page.$$eval('table#matrix tr[data-environment]', (trs) => trs.map((tr) => tr.dataset.environment));
      assert.deepEqual([...rows].sort(), [...scenario.environments].sort(), 'one row per environment');

      const states = new Map((await scenario.states()).map(([e, g, s]) => [`${e}/${g}`, s]));
      for (const environment of scenario.environments) {
        const rendered = scenario.render(environment);
        const names = rendered.map((r) => r.gateway).sort();
        assert.deepEqual(names, [...scenario.expected[environment]].sort());
        const cells = await page.$$eval(
          `table#matrix tr[data-environment="${environment}"] td.cell`,
          (tds) => tds.map((td) => td.dataset.gateway),
        );
        assert.deepEqual(cells.sort(), names, `${environment}: one cell per gateway`);
        for (const { gateway, version } of rendered) {
          const cell = page.locator(`td.cell[data-environment="${environment}"][data-gateway="${gateway}"]`);
          const state = await cell.getAttribute('data-state');
          assert.equal(state, 'in-sync', `${environment}/${gateway} data-state`);
          assert.equal(state, states.get(`${environment}/${gateway}`), 'the API says the same');
          const word = (await cell.locator('span.state').first().textContent()).trim();
          assert.ok(word.endsWith(state), `${environment}/${gateway}: span.state says "${word}", not ${state}`);
          // The desired version: the cell's own <code class="version">
          // (a drifted cell may show what runs, too, inside it).
          const shown = (await cell.locator(':scope > code.version').first().textContent()).trim();
          assert.match(shown, VERSION);
          assert.equal(shown, version, `${environment}/${gateway}: the version sluice render gives`);
          const href = `/environments/${environment}/gateways/${gateway}`;
          assert.equal(await cell.locator(`a[href="${href}"]`).count(), 1, `${environment}/${gateway} links to ${href}`);
        }
      }
      await screenshot(page, 'dashboard-overview');
    } finally {
      await context.close();
    }
  });

  test('counts every gateway by state', async () => {
    const { context, page } = await signedIn(browser, scenario.url, TOKENS.admin);
    try {
      const counts = await page.$$eval('ul#counts li[data-state]', (lis) =>
        lis.map((li) => [li.dataset.state, li.textContent]),
      );
      const shown = counts.map(([state]) => state);
      for (const state of shown) assert.ok(STATES.includes(state), `unknown state ${state} in #counts`);
      assert.ok(shown.includes('in-sync'), `#counts has in-sync: ${JSON.stringify(counts)}`);
      const number = (text) => Number(/\d+/.exec(text)?.[0] ?? NaN);
      const inSync = counts.find(([state]) => state === 'in-sync');
      const total = Object.values(scenario.expected).flat().length;
      assert.equal(number(inSync[1]), total, `in-sync count: ${inSync[1]}`);
      const sum = counts.reduce((n, [, text]) => n + number(text), 0);
      assert.equal(sum, total, `the counts add up to the gateways: ${JSON.stringify(counts)}`);
    } finally {
      await context.close();
    }
  });

  test('a cell links to its gateway page', async () => {
    const { context, page } = await signedIn(browser, scenario.url, TOKENS.admin);
    try {
      await page.click('td.cell[data-environment="staging"][data-gateway="staging-1"] a[href$="/gateways/staging-1"]');
      await page.waitForURL(`${scenario.url}/environments/staging/gateways/staging-1`);
      assert.match(await page.textContent('main'), /staging-1/);
    } finally {
      await context.close();
    }
  });

  test('without JavaScript the overview still lists every environment', async () => {
    const context = await newContext(browser, { javaScriptEnabled: false });
    try {
      const page = await context.newPage();
      await signIn(page, scenario.url, TOKENS.admin);
      const rows = await page.$$eval('table#matrix tr[data-environment]', (trs) => trs.map((tr) => tr.dataset.environment));
      assert.deepEqual(rows.sort(), [...scenario.environments].sort());
      const cells = await page.$$eval('td.cell[data-state]', (tds) => tds.length);
      assert.equal(cells, Object.values(scenario.expected).flat().length);
      for (const environment of scenario.environments) {
        const response = await page.goto(`${scenario.url}/environments/${environment}`);
        assert.equal(response.status(), 200, `/environments/${environment} without JavaScript`);
      }
    } finally {
      await context.close();
    }
  });

  test('compare shows the plan between two revisions and marks what weakens', async () => {
    const head = sideCommit(
      scenario,
      'weaken',
      (dir) => {
        const file = path.join(dir, 'environments/production/packs/baseline.yaml');
        const text = fs.readFileSync(file, 'utf8');
        const weakened = text.replace('action: block\n    pci_mode', 'action: redact\n    pci_mode');
        assert.notEqual(weakened, text, 'the example production overlay blocks PII');
        fs.writeFileSync(file, weakened);
      },
      'production redacts instead of blocking',
    );
    const { context, page } = await signedIn(browser, scenario.url, TOKENS.admin);
    try {
      const response = await page.goto(`${scenario.url}/compare?base=${scenario.commit}&head=${head}`);
      assert.equal(response.status(), 200, await response.text());
      const text = await page.textContent('main');
      assert.match(text, /production/);
      assert.match(text, /pii-detector/);
      assert.match(text, /weaken/i, `the weakening change is marked:\n${text}`);
    } finally {
      await context.close();
    }
  });
});
