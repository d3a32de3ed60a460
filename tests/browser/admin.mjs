// The admin console in a real browser: Debian's Chromium driven by playwright-core.
//
// Starts `target/debug/unipay serve` on a fresh database with --admin-token, creates orders with
// `unipay call`, then, as a person would: opens /admin (redirected to the login form), logs in
// with a wrong and then the right token, searches an order by its number, opens it, clicks
// Close, and sees it closed (status, flash message, a close record with actor admin). Then it
// refunds a payment that arrived after a close: it makes one (a sandbox order paid and closed
// through the API, the sandbox's trade marked paid with the sqlite3 command line — the sandbox's
// payer cannot pay a closed trade, a real channel's can — and a pay sync that finds the money:
// unipay flags the order), follows the dashboard's link to the needs-attention list, opens the
// order, fills the refund form and sees the refund succeed. It also checks that the console
// fetches nothing from anywhere but the server. The closed order's page is saved to
// target/admin-order.png and the refunded one's to target/admin-refund.png for humans to look at.
// Any failure exits non-zero.
//
// Run from the repository root after `cargo build`:  node tests/browser/admin.mjs
// Environment: UNIPAY_BIN (default target/debug/unipay, or $CARGO_TARGET_DIR/debug/unipay),
// CHROMIUM (default /usr/bin/chromium), SQLITE3 (default sqlite3).

import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const bin =
  process.env.UNIPAY_BIN ??
  join(process.env.CARGO_TARGET_DIR ?? join(root, 'target'), 'debug', 'unipay');
const chromiumPath = process.env.CHROMIUM ?? '/usr/bin/chromium';
const sqlite3 = process.env.SQLITE3 ?? 'sqlite3';
const screenshot = join(root, 'target', 'admin-order.png');
const refundShot = join(root, 'target', 'admin-refund.png');
const TIMEOUT_MS = 15_000;

function check(condition, what) {
  if (!condition) throw new Error(`check failed: ${what}`);
  console.log(`ok - ${what}`);
}

/** Starts `unipay serve` and resolves with its base URL once it printed `listening on …`. */
function startServer(db, token) {
  const child = spawn(
    bin,
    ['serve', '--listen', '127.0.0.1:0', '--db', db, '--admin-token', token],
    { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, RUST_LOG: 'warn' } },
  );
  const base = new Promise((resolveBase, reject) => {
    const timer = setTimeout(() => reject(new Error('unipay printed no `listening on` line')), TIMEOUT_MS);
    child.on('exit', (code) => reject(new Error(`unipay serve exited early (${code})`)));
    createInterface({ input: child.stdout }).on('line', (line) => {
      const m = line.match(/^listening on (http:\/\/\S+)$/);
      if (m) {
        clearTimeout(timer);
        resolveBase(m[1]);
      }
    });
  });
  return { child, base };
}

/** `unipay call … ENDPOINT JSON` with the demo app; returns the reply envelope. */
function call(db, base, endpoint, body) {
  const out = execFileSync(
    bin,
    ['call', '--db', db, '--url', base, '--app-id', 'DEMO_APP', endpoint, JSON.stringify(body)],
    { encoding: 'utf8' },
  );
  const reply = JSON.parse(out);
  if (reply.code !== 0) throw new Error(`${endpoint} failed: ${out}`);
  return reply;
}

/**
 * A payment that arrives after a close, as a real channel allows (an old QR code scanned): a
 * sandbox order paid and closed through the API (the sandbox closes its trade), then the
 * sandbox's own trade marked paid (the channel's side, with sqlite3), then a pay sync: unipay
 * finds the money, makes the order `success` and flags it for an operator. Returns its orderNo.
 */
function latePayment(db, base, bizOrderNo, amount) {
  const orderNo = call(db, base, 'pay', {
    bizOrderNo, title: '关闭后到账', amount, channel: 'sandbox', method: 'wap',
  }).data.orderNo;
  call(db, base, 'close', { bizOrderNo });
  if (!/^P[0-9A-Za-z]+$/.test(orderNo)) throw new Error(`unexpected order number ${orderNo}`);
  const changed = execFileSync(sqlite3, ['-cmd', '.timeout 5000', db,
    `UPDATE sandbox_trade SET state = 'paid', updated_at = ${Date.now()} ` +
    `WHERE order_no = '${orderNo}' AND state = 'closed'; SELECT changes();`], { encoding: 'utf8' });
  if (changed.trim() !== '1') throw new Error(`the sandbox trade of ${orderNo} was not closed: ${changed}`);
  const synced = call(db, base, 'syncPay', { bizOrderNo }).data;
  if (synced.orderStatus !== 'success' || synced.adjust !== true) {
    throw new Error(`the pay sync did not find the money: ${JSON.stringify(synced)}`);
  }
  return orderNo;
}

async function main() {
  check(existsSync(bin), `the unipay binary exists at ${bin} (run cargo build first)`);
  const dir = mkdtempSync(join(tmpdir(), 'unipay-browser-'));
  const db = join(dir, 'unipay.db');
  const token = randomBytes(18).toString('base64url');
  const server = startServer(db, token);
  let context;
  try {
    const base = await server.base;
    console.log(`unipay at ${base}`);

    // A few orders; the one to close is in `progress` at the sandbox channel.
    const order = call(db, base, 'pay', {
      bizOrderNo: 'BROWSER-1',
      title: '浏览器测试订单 <b>not bold</b>',
      amount: '12.50',
      channel: 'sandbox',
      method: 'wap',
      attach: 'a&b<c>',
    }).data.orderNo;
    call(db, base, 'pay', { bizOrderNo: 'BROWSER-2', title: '咖啡', amount: '3', channel: 'sandbox', method: 'wap' });
    call(db, base, 'prePay', { bizOrderNo: 'BROWSER-3', title: '茶', amount: '5.00' });
    console.log(`order to close: ${order}`);

    context = await chromium.launchPersistentContext(join(dir, 'profile'), {
      executablePath: chromiumPath,
      headless: true,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
      viewport: { width: 1280, height: 900 },
      locale: 'zh-CN',
    });
    context.setDefaultTimeout(TIMEOUT_MS);
    const page = context.pages()[0] ?? (await context.newPage());
    const foreign = [];
    page.on('request', (r) => {
      if (!r.url().startsWith(base)) foreign.push(r.url());
    });
    const pageErrors = [];
    page.on('pageerror', (e) => pageErrors.push(String(e)));

    // Not logged in: the console sends the browser to its login form.
    await page.goto(`${base}/admin/orders`);
    check(new URL(page.url()).pathname === '/admin/login', 'an anonymous browser is sent to /admin/login');
    check(!(await page.content()).includes(order), 'the login page shows no order');

    // A wrong token is refused, the right one logs in.
    await page.fill('#token', 'not-the-token');
    await Promise.all([page.waitForURL('**/admin/login'), page.click('#submit')]);
    check((await page.textContent('#error')).includes('令牌不正确'), 'a wrong token is refused');
    await page.fill('#token', token);
    await Promise.all([page.waitForURL(`${base}/admin`), page.click('#submit')]);
    check((await page.textContent('h1')).includes('概览'), 'the right token opens the dashboard');
    const cookies = await context.cookies(`${base}/admin/`);
    const session = cookies.find((c) => c.name === 'unipay_admin');
    check(session && session.httpOnly && session.sameSite === 'Strict' && session.path === '/admin',
      'the session cookie is HttpOnly, SameSite=Strict, Path=/admin');

    // Search the order by its number.
    await page.click('header a[href="/admin/orders"]');
    await page.waitForURL('**/admin/orders');
    check((await page.locator('#orders tbody tr').count()) === 3, 'the list shows the three orders');
    await page.fill('#q', order);
    await Promise.all([page.waitForURL('**/admin/orders?q=*'), page.click('#search')]);
    const rows = page.locator('#orders tbody tr');
    check((await rows.count()) === 1, 'the search finds exactly one order');
    check((await rows.first().textContent()).includes('浏览器测试订单 <b>not bold</b>'),
      'the title is shown as text, not markup');

    // Open it and close it.
    await Promise.all([page.waitForURL(`**/admin/orders/${order}`), page.click(`#orders a:has-text("${order}")`)]);
    check((await page.textContent('#order-status')).includes('支付中'), 'the order is 支付中 before the close');
    await Promise.all([page.waitForURL(`**/admin/orders/${order}?*`), page.click('#close')]);
    check((await page.textContent('#flash')).includes('操作成功'), 'the close reports success');
    check((await page.textContent('#order-status')).includes('支付关闭'), 'the order is 支付关闭 after the close');
    check((await page.locator('#close-records tr[data-actor="admin"]').count()) === 1,
      'a close record with actor admin is shown');
    check((await page.locator('#close').count()) === 0, 'a closed order offers no Close button');

    // The API agrees.
    const queried = call(db, base, 'query', { bizOrderNo: 'BROWSER-1' }).data;
    check(queried.status === 'close', 'the API reports the order closed');

    mkdirSync(dirname(screenshot), { recursive: true });
    await page.screenshot({ path: screenshot, fullPage: true });
    console.log(`screenshot: ${screenshot}`);

    // Money that arrived after a close: found from the dashboard, refunded from its page.
    const late = latePayment(db, base, 'BROWSER-LATE', '20.00');
    console.log(`late payment to refund: ${late}`);
    await page.goto(`${base}/admin`);
    await Promise.all([page.waitForURL('**/admin/orders?attention=1'), page.click('#attention-list')]);
    const flagged = page.locator('#orders tbody tr');
    check((await flagged.count()) === 1 && (await flagged.first().getAttribute('data-order')) === late,
      'the needs-attention list shows the late payment only');
    check(await page.isChecked('#attention-only'), 'the filter form shows the needs-attention filter');
    await Promise.all([page.waitForURL(`**/admin/orders/${late}`), page.click(`#orders a:has-text("${late}")`)]);
    check((await page.textContent('#attention')).includes('需要人工处理'), 'the order is flagged for an operator');
    check((await page.textContent('#order-status')).includes('支付成功'), 'the late payment made the order 支付成功');
    check((await page.textContent('#refundable')).includes('20.00'), 'the refund form shows the refundable balance');
    await page.fill('#refund-amount', '20.00');
    await page.fill('#refund-reason', '关闭后到账 <退回>');
    await Promise.all([page.waitForURL(`**/admin/orders/${late}?flash=refunded`), page.click('#refund')]);
    check((await page.textContent('#flash')).includes('退款成功'), 'the refund reports success');
    const refunds = page.locator('#refunds tbody tr');
    check((await refunds.count()) === 1, 'the order lists one refund');
    const refundRow = refunds.first();
    check((await refundRow.getAttribute('data-status')) === 'success'
      && (await refundRow.textContent()).includes('退款成功'), 'the refund is 退款成功');
    check((await refundRow.textContent()).includes('关闭后到账 <退回>'), 'the reason is shown as text');
    check((await page.getAttribute('#refund-status', 'data-refund-status')) === 'refunded'
      && (await page.textContent('#refund-status')).includes('全部退款'), 'the order is 全部退款 (refundStatus refunded)');
    check((await page.locator('#refund-form').count()) === 0, 'a fully refunded order offers no refund form');
    const after = call(db, base, 'query', { bizOrderNo: 'BROWSER-LATE' }).data;
    check(after.status === 'success' && after.refundStatus === 'refunded' && Number(after.refundableBalance) === 0,
      'the API reports the order refunded, its balance 0');
    const refundNo = await refundRow.getAttribute('data-refund');
    const refund = call(db, base, 'queryRefund', { refundNo }).data;
    check(refund.status === 'success' && refund.bizRefundNo.startsWith('ADMIN-'),
      'the API reports the console\'s refund succeeded');
    await page.screenshot({ path: refundShot, fullPage: true });
    console.log(`screenshot: ${refundShot}`);

    check(foreign.length === 0, `the console fetched nothing from elsewhere (${foreign.join(', ')})`);
    check(pageErrors.length === 0, `no page errors (${pageErrors.join('; ')})`);

    // Logging out ends the session.
    await Promise.all([page.waitForURL('**/admin/login'), page.click('#logout')]);
    await page.goto(`${base}/admin`);
    check(new URL(page.url()).pathname === '/admin/login', 'after logout the console asks to log in again');
    console.log('browser test passed');
  } finally {
    if (context) await context.close().catch(() => {});
    server.child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(`browser test FAILED: ${err.stack ?? err}`);
  process.exit(1);
});
