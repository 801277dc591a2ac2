// Sign-in and scope: the login form, the session cookie (HttpOnly,
// SameSite=Strict), a development token that sees only development and
// whose sync on production is refused (403), an admin token whose sync on
// production is done (303 back to the environment page), and sign-out.

import { describe, before, after, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { SKIP, TOKENS, exampleScenario, launch, newContext, sideCommit, signedIn } from './harness.mjs';

describe('sign-in and scope', { skip: SKIP }, () => {
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

  test('the login form posts a password field to /login', async () => {
    const context = await newContext(browser);
    try {
      const page = await context.newPage();
      const response = await page.goto(`${scenario.url}/login`);
      assert.equal(response.status(), 200);
      const form = page.locator('form[method="post"][action="/login"]');
      assert.equal(await form.count(), 1, 'one <form method="post" action="/login">');
      assert.equal(await form.locator('input[name="token"][type="password"]').count(), 1);
      assert.equal(await form.locator('button[type="submit"], input[type="submit"]').count(), 1);
    } finally {
      await context.close();
    }
  });

  test('signing in sets an HttpOnly SameSite=Strict session cookie and lands on /', async () => {
    const { context, page } = await signedIn(browser, scenario.url, TOKENS.development);
    try {
      assert.equal(page.url(), `${scenario.url}/`);
      const cookies = await context.cookies(scenario.url);
      const session = cookies.find((c) => c.name === 'sluice_session');
      assert.ok(session, `a sluice_session cookie: ${JSON.stringify(cookies.map((c) => c.name))}`);
      assert.equal(session.httpOnly, true, 'HttpOnly');
      assert.equal(session.sameSite, 'Strict', 'SameSite=Strict');
      assert.ok(!session.value.includes(TOKENS.development), 'the cookie is not the token');
      assert.equal(await page.evaluate(() => document.cookie.includes('sluice_session')), false, 'scripts cannot read it');
    } finally {
      await context.close();
    }
  });

  test('a wrong token does not sign in', async () => {
    const context = await newContext(browser);
    try {
      const page = await context.newPage();
      await page.goto(`${scenario.url}/login`);
      await page.fill('form[action="/login"] input[name="token"]', 'not-a-token');
      const [response] = await Promise.all([
        page.waitForResponse((r) => r.url() === `${scenario.url}/login` && r.request().method() === 'POST'),
        page.click('form[action="/login"] [type="submit"]'),
      ]);
      assert.ok(response.status() >= 400, `POST /login with a wrong token: ${response.status()}`);
      const cookies = await context.cookies(scenario.url);
      assert.equal(cookies.filter((c) => c.name === 'sluice_session' && c.value).length, 0);
    } finally {
      await context.close();
    }
  });

  test('a development token sees development only, and its sync on production is refused', async () => {
    const { context, page } = await signedIn(browser, scenario.url, TOKENS.development);
    try {
      await page.waitForSelector('table#matrix tr[data-environment="development"]');
      assert.equal(await page.locator('tr[data-environment="production"]').count(), 0, 'no production row');
      assert.equal(await page.locator('td.cell[data-environment="production"]').count(), 0, 'no production cell');
      for (const other of ['staging', 'eval']) {
        assert.equal(await page.locator(`tr[data-environment="${other}"]`).count(), 0, `no ${other} row`);
      }
      assert.doesNotMatch(await page.textContent('main'), /prod-eu-1|prod-us-1/, 'no production gateway named');

      const hidden = await page.goto(`${scenario.url}/environments/production`);
      assert.ok([403, 404].includes(hidden.status()), `GET /environments/production: ${hidden.status()}`);
      assert.doesNotMatch(await page.content(), /prod-eu-1/, 'the refusal names no production gateway');

      await page.goto(`${scenario.url}/environments/development`);
      const csrf = await page.getAttribute('form[action$="/sync"] input[name="csrf"]', 'value');
      assert.ok(csrf, 'the development sync form carries a CSRF token');

      // The same session and CSRF token, aimed at production.
      const refused = await page.request.post(`${scenario.url}/environments/production/sync`, {
        form: { csrf },
        headers: { origin: scenario.url },
        maxRedirects: 0,
      });
      assert.equal(refused.status(), 403, `POST /environments/production/sync: ${refused.status()} ${await refused.text()}`);

      // And from a form in the page, as a browser would send it.
      const [submitted] = await Promise.all([
        page.waitForResponse((r) => r.url().endsWith('/environments/production/sync')),
        page.waitForURL((url) => url.pathname === '/environments/production/sync', { waitUntil: 'load' }),
        page.evaluate((value) => {
          const form = document.createElement('form');
          form.method = 'post';
          form.action = '/environments/production/sync';
          const input = document.createElement('input');
          input.type = 'hidden';
          input.name = 'csrf';
          input.value = value;
          form.append(input);
          document.body.append(form);
          form.submit();
        }, csrf),
      ]);
      assert.equal(submitted.status(), 403, 'a form post to production is refused');
      assert.doesNotMatch(await page.content(), /prod-eu-1/, 'the refusal names no production gateway');

      // Its own environment it may sync.
      await page.goto(`${scenario.url}/environments/development`);
      const [own] = await Promise.all([
        page.waitForResponse((r) => r.url().endsWith('/environments/development/sync') && r.request().method() === 'POST'),
        page.click('form[action$="/sync"] [type="submit"]'),
      ]);
      assert.equal(own.status(), 303, 'the development sync is done');
      await page.waitForURL(`${scenario.url}/environments/development`);
    } finally {
      await context.close();
    }
  });

  test('compare with a development token shows nothing of production', async () => {
    const head = sideCommit(
      scenario,
      'weaken-production',
      (dir) => {
        const file = path.join(dir, 'environments/production/packs/baseline.yaml');
        const text = fs.readFileSync(file, 'utf8');
        fs.writeFileSync(file, text.replace('action: block\n    pci_mode', 'action: redact\n    pci_mode'));
      },
      'production redacts instead of blocking',
    );
    const { context, page } = await signedIn(browser, scenario.url, TOKENS.development);
    try {
      const response = await page.goto(`${scenario.url}/compare?base=${scenario.commit}&head=${head}`);
      assert.ok([200, 403].includes(response.status()), `compare: ${response.status()}`);
      const text = await page.textContent('main');
      assert.doesNotMatch(text, /production|pii-detector/, `a development token's compare:\n${text}`);
    } finally {
      await context.close();
    }
  });

  test('a sync without the CSRF token is refused', async () => {
    const { context, page } = await signedIn(browser, scenario.url, TOKENS.admin);
    try {
      const refused = await page.request.post(`${scenario.url}/environments/production/sync`, {
        form: { csrf: 'wrong' },
        headers: { origin: scenario.url },
        maxRedirects: 0,
      });
      assert.equal(refused.status(), 403);
    } finally {
      await context.close();
    }
  });

  test('an admin token syncs production from its page (303 back to it)', async () => {
    const { context, page } = await signedIn(browser, scenario.url, TOKENS.admin);
    try {
      await page.waitForSelector('tr[data-environment="production"]');
      await page.goto(`${scenario.url}/environments/production`);
      const form = page.locator('form[action="/environments/production/sync"]');
      assert.equal(await form.count(), 1, 'a sync form');
      assert.ok(await form.locator('input[name="csrf"]').getAttribute('value'), 'with a CSRF token');
      const [response] = await Promise.all([
        page.waitForResponse((r) => r.url().endsWith('/environments/production/sync') && r.request().method() === 'POST'),
        form.locator('[type="submit"]').click(),
      ]);
      assert.equal(response.status(), 303);
      assert.equal(new URL(response.headers().location, scenario.url).pathname, '/environments/production');
      await page.waitForURL(`${scenario.url}/environments/production`);
    } finally {
      await context.close();
    }
  });

  test('signing out ends the session', async () => {
    const { context, page } = await signedIn(browser, scenario.url, TOKENS.admin);
    try {
      await Promise.all([
        page.waitForResponse((r) => r.url().endsWith('/logout') && r.request().method() === 'POST'),
        page.click('form[action="/logout"] [type="submit"]'),
      ]);
      await page.goto(`${scenario.url}/`);
      assert.equal(new URL(page.url()).pathname, '/login', 'signed out, the overview asks to sign in');
    } finally {
      await context.close();
    }
  });
});
