// Server-side paging of the ledger's history: one environment of 1,000
// `file` gateways, whose first pass writes 1,000 attempts; following
// `a#older` from /environments/fleet/history visits every one of them once,
// newest first, 50 to a page.

import { describe, before, after, test } from 'node:test';
import assert from 'node:assert/strict';
import { SKIP, TOKENS, fleetScenario, launch, signedIn } from './harness.mjs';

const PAGE = 50;

describe('history paging', { skip: SKIP }, () => {
  let scenario;
  let browser;

  before(async () => {
    scenario = await fleetScenario({ count: 1000 });
    browser = await launch();
  });

  after(async () => {
    await browser?.close();
    await scenario?.stop();
  });

  test('following a#older visits at least 1,000 attempts once each, newest first', async () => {
    // Without JavaScript: what is read is what the server rendered.
    const { context, page } = await signedIn(browser, scenario.url, TOKENS.admin, { javaScriptEnabled: false });
    try {
      const response = await page.goto(`${scenario.url}/environments/${scenario.environment}/history`);
      assert.equal(response.status(), 200);
      const ids = [];
      const sizes = [];
      for (let pages = 0; ; pages++) {
        assert.ok(pages < 100, 'at most 100 pages');
        const found = await page.$$eval('tr.attempt[data-id]', (trs) => trs.map((tr) => Number(tr.dataset.id)));
        sizes.push(found.length);
        ids.push(...found);
        const older = page.locator('a#older');
        if ((await older.count()) === 0) break;
        const href = await older.getAttribute('href');
        assert.match(href, /before=/, `a#older pages with before=: ${href}`);
        await Promise.all([page.waitForURL((url) => url.search.includes('before=')), older.click()]);
      }
      assert.ok(ids.length >= scenario.count, `${ids.length} attempts seen, want at least ${scenario.count}`);
      assert.equal(new Set(ids).size, ids.length, 'no attempt twice');
      assert.ok(ids.every((id) => Number.isInteger(id) && id > 0), 'numeric ids');
      for (let i = 1; i < ids.length; i++) {
        assert.ok(ids[i] < ids[i - 1], `strictly decreasing at ${i}: ${ids[i - 1]} then ${ids[i]}`);
      }
      assert.ok(sizes.slice(0, -1).every((n) => n === PAGE), `${PAGE} rows to a page: ${JSON.stringify(sizes)}`);
      assert.ok(sizes.at(-1) >= 1 && sizes.at(-1) <= PAGE, `last page: ${sizes.at(-1)}`);
    } finally {
      await context.close();
    }
  });

  test('history filtered by gateway shows only that gateway', async () => {
    const { context, page } = await signedIn(browser, scenario.url, TOKENS.admin, { javaScriptEnabled: false });
    try {
      const response = await page.goto(`${scenario.url}/environments/${scenario.environment}/history?gateway=gw-0007`);
      assert.equal(response.status(), 200);
      const rows = await page.$$eval('tr.attempt[data-id]', (trs) => trs.map((tr) => tr.textContent));
      assert.ok(rows.length >= 1, 'its attempt is listed');
      for (const row of rows) assert.match(row, /gw-0007/);
      assert.equal(await page.locator('a#older').count(), 0, 'one page');
    } finally {
      await context.close();
    }
  });

  test('the overview accounts for all 1,000 gateways and the environment page lists each', async () => {
    const { context, page } = await signedIn(browser, scenario.url, TOKENS.admin);
    try {
      // Settled gateways at one version may share one cell that says how
      // many (data-count); any other gateway has a cell of its own.
      const cells = await page.$$eval(`td.cell[data-environment="${scenario.environment}"]`, (tds) =>
        tds.map((td) => ({ gateway: td.dataset.gateway ?? null, count: td.dataset.count ?? null, state: td.dataset.state })),
      );
      const total = cells.reduce((n, c) => n + (c.gateway ? 1 : Number(c.count)), 0);
      assert.equal(total, scenario.count, `the cells stand for every gateway: ${JSON.stringify(cells.slice(0, 5))}`);
      for (const c of cells) assert.equal(c.state, 'in-sync');
      assert.ok(cells.every((c) => c.gateway || Number(c.count) > 1), 'a cell without a gateway counts several');

      await page.goto(`${scenario.url}/environments/${scenario.environment}`);
      const listed = await page.$$eval('#gateways tr[data-gateway]', (trs) => trs.map((tr) => tr.dataset.gateway));
      assert.equal(new Set(listed).size, scenario.count, 'the environment page lists every gateway');
    } finally {
      await context.close();
    }
  });
});
