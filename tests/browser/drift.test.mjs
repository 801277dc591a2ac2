// Live updates: a hand edit on a production gateway (PUT /admin/v1/config
// on its reference gateway, the drift policy only detecting) turns its cell
// `drifted` on an open overview without a reload; the environment page lists
// the episode and the gateway page's diff shows the changed setting.

import { describe, before, after, test } from 'node:test';
import assert from 'node:assert/strict';
import { SKIP, TOKENS, exampleScenario, launch, screenshot, signedIn } from './harness.mjs';

describe('drift, live', { skip: SKIP }, () => {
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

  test('a hand edit turns the cell drifted without a reload, and the diff shows it', async () => {
    const { context, page } = await signedIn(browser, scenario.url, TOKENS.admin);
    try {
      const cell = 'td.cell[data-environment="production"][data-gateway="prod-eu-1"]';
      await page.waitForSelector(`${cell}[data-state="in-sync"]`, { timeout: 10_000 });
      // Anything the page keeps in memory survives only if it is not reloaded.
      await page.evaluate(() => {
        window.__sluiceNoReload = true;
      });
      let navigations = 0;
      page.on('framenavigated', (frame) => {
        if (frame === page.mainFrame()) navigations++;
      });

      await scenario.handEdit('prod-eu-1');
      await page.waitForSelector(`${cell}[data-state="drifted"]`, { timeout: 30_000 });
      assert.equal(await page.evaluate(() => window.__sluiceNoReload), true, 'the page was not reloaded');
      assert.equal(navigations, 0, 'no navigation happened');
      const word = (await page.locator(`${cell} span.state`).first().textContent()).trim();
      assert.ok(word.endsWith('drifted'), `span.state says "${word}"`);
      // The other production gateway was not touched.
      assert.equal(
        await page.getAttribute('td.cell[data-environment="production"][data-gateway="prod-us-1"]', 'data-state'),
        'in-sync',
      );
      const drifted = await page.$$eval('ul#counts li[data-state="drifted"]', (lis) => lis.map((li) => li.textContent));
      assert.equal(drifted.length, 1, 'a drifted count');
      assert.match(drifted[0], /\b1\b/, `one drifted: ${drifted[0]}`);
      await screenshot(page, 'dashboard-overview-drifted');

      const response = await page.goto(`${scenario.url}/environments/production`);
      assert.equal(response.status(), 200);
      assert.match(await page.textContent('main'), /prod-eu-1/);
      await screenshot(page, 'dashboard-environment');

      await page.goto(`${scenario.url}/environments/production/gateways/prod-eu-1`);
      const diff = await page.textContent('pre#diff');
      assert.match(diff, /^-.*"action": "block"/m, `the diff has what should run:\n${diff}`);
      assert.match(diff, /^\+.*"action": "redact"/m, `the diff has what runs:\n${diff}`);
      await screenshot(page, 'dashboard-gateway');
    } finally {
      await context.close();
    }
  });

  test('the gateway page of a gateway in sync has no diff', async () => {
    const { context, page } = await signedIn(browser, scenario.url, TOKENS.admin);
    try {
      const response = await page.goto(`${scenario.url}/environments/production/gateways/prod-us-1`);
      assert.equal(response.status(), 200);
      assert.equal(await page.locator('pre#diff').count(), 0);
    } finally {
      await context.close();
    }
  });
});
