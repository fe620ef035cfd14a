// Drives owl's chat page in headless Chromium with `playwright-core` (issue #21) against a real
// `owl serve`: load, send and watch tokens stream in, settings, stop a long answer, regenerate,
// edit and resend, rename, export and import, reload and find the conversation again, an answer
// that tries to run code, and a server that wants an API key. A screenshot of each state goes
// to OUT_DIR; what it observed is printed as one JSON line for web_page_test.cpp to check.
// usage: node web_page.mjs NPM_PREFIX PORT KEYED_PORT OUT_DIR
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';

const [npmPrefix, port, keyedPort, outDir] = process.argv.slice(2);
const { chromium } = createRequire(npmPrefix + '/')('playwright-core');
const base = `http://127.0.0.1:${port}`;
const out = {};

const browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', headless: true, args: ['--no-sandbox'] });
try {
  const context = await browser.newContext({ viewport: { width: 1100, height: 760 }, acceptDownloads: true });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  const shot = (name) => page.screenshot({ path: `${outDir}/${name}.png` });
  const idle = () => page.waitForFunction(() => !document.body.dataset.busy, null, { timeout: 60000 });
  const assistantTexts = () => page.$$eval('.message.assistant .body', (els) => els.map((e) => e.textContent));

  // 1. The page loads, every asset from owl itself, and names the model and its context.
  const requests = [];
  page.on('request', (r) => requests.push(r.url()));
  await page.goto(base + '/');
  await page.waitForFunction(() => document.getElementById('model-name').textContent !== '…');
  out.model = await page.textContent('#model-name');
  out.context = await page.textContent('#context-use');
  out.foreign_requests = requests.filter((u) => !u.startsWith(base)).length;
  await shot('01-loaded');

  // 2. Settings: at most 40 tokens per answer.
  await page.click('#open-settings');
  await page.fill('#set-max-tokens', '40');
  await shot('02-settings');
  await page.click('#save-settings');

  // 3. A message; the answer's text is watched as it grows.
  await page.evaluate(() => {
    window.__lengths = [];
    new MutationObserver(() => {
      const b = [...document.querySelectorAll('.message.assistant .body')].at(-1);
      if (b) window.__lengths.push(b.textContent.length);
    }).observe(document.getElementById('messages'), { childList: true, subtree: true, characterData: true });
  });
  await page.fill('#input', 'Once upon a time');
  await page.press('#input', 'Enter');
  await page.waitForSelector('.message.assistant');
  await idle();
  out.growth_steps = await page.evaluate(() => new Set(window.__lengths).size);
  out.first_answer = (await assistantTexts())[0];
  out.stats = await page.textContent('.message.assistant .stats');
  out.speed = await page.textContent('#speed');
  out.context_after = await page.textContent('#context-use');
  out.title = await page.textContent('#conversations li.active .title');
  await shot('03-answered');

  // 4. A long answer (no limit, the connection slowed to a trickle) stopped half-way.
  await page.click('#open-settings');
  await page.fill('#set-max-tokens', '');
  await page.click('#save-settings');
  const cdp = await context.newCDPSession(page);
  await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: 600, uploadThroughput: -1 });
  await page.evaluate(() => { window.__lengths = []; });
  await page.fill('#input', 'Tell me a long story');
  await page.press('#input', 'Enter');
  await page.waitForFunction(() => ([...document.querySelectorAll('.message.assistant .body')].at(-1)?.textContent.length ?? 0) > 20);
  await shot('04-streaming');
  await page.click('#stop');
  await idle();
  await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
  out.stopped_stats = await page.$$eval('.message.assistant .stats', (els) => els.at(-1).textContent);
  out.stopped_text = (await assistantTexts()).at(-1);
  out.stopped_growth_steps = await page.evaluate(() => new Set(window.__lengths).size);
  await shot('05-stopped');

  // 5. Regenerate the last answer: the same number of messages, a fresh answer.
  const before = await page.$$eval('.message', (els) => els.length);
  await page.click('#regenerate');
  await idle();
  out.regenerated_count = [before, await page.$$eval('.message', (els) => els.length)];
  out.regenerated_stats = await page.$$eval('.message.assistant .stats', (els) => els.at(-1).textContent);
  await shot('06-regenerated');

  // 6. Edit the first message and send it again: the conversation is cut there.
  await page.click('.message.user .edit');
  await page.fill('.edit-input', 'Once upon a time there was a cat');
  await page.click('.resend');
  await idle();
  out.edited = await page.$$eval('.message', (els) => els.map((e) => e.className.replace('message ', '')));
  out.edited_text = await page.textContent('.message.user .body');

  // 7. Rename, then export, delete and import it back.
  await page.click('#conversations li.active .rename');
  await page.fill('.rename-input', 'Cat story');
  await page.press('.rename-input', 'Enter');
  out.renamed = await page.textContent('#conversations li.active .title');
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#export')]);
  const exported = JSON.parse(readFileSync(await download.path(), 'utf8'));
  out.exported = exported.conversations.map((c) => ({ title: c.title, messages: c.messages.length }));
  await page.click('#conversations li.active .delete');
  out.after_delete = await page.$$eval('#conversations li', (els) => els.length);
  await page.setInputFiles('#import', { name: 'owl.json', mimeType: 'application/json', buffer: Buffer.from(JSON.stringify(exported)) });
  await page.waitForSelector('#conversations li');
  out.imported = await page.$$eval('#conversations li .title', (els) => els.map((e) => e.textContent));

  // 8. Reload: the conversation is still there.
  await page.reload();
  await page.waitForFunction(() => document.getElementById('model-name').textContent !== '…');
  await page.click('#conversations li:first-child');
  out.reloaded_titles = await page.$$eval('#conversations li .title', (els) => els.map((e) => e.textContent));
  out.reloaded_messages = await page.$$eval('.message', (els) => els.length);
  out.reloaded_context = await page.textContent('#context-use');
  await shot('07-reloaded');

  // 9. An answer that tries to run code: a <script>, an onerror= handler and a javascript: link.
  const hostile = '<script>window.__xss = "script"</script>\n\n<img src="x" onerror="window.__xss = \'onerror\'">\n\n' +
    '[click me](javascript:window.__xss=\'link\')\n\n```js\nconsole.log("code")\n```\n';
  await page.route('**/v1/chat/completions', (route) => route.fulfill({
    status: 200, contentType: 'text/event-stream',
    body: `data: ${JSON.stringify({ choices: [{ index: 0, delta: { content: hostile } }] })}\n\ndata: [DONE]\n\n`,
  }));
  await page.click('#new-chat');
  await page.fill('#input', 'Say something dangerous');
  await page.press('#input', 'Enter');
  await idle();
  await page.waitForTimeout(300);  // an onerror would fire once the image fails to load
  const link = await page.$('.message.assistant .body a');
  if (link) await link.click().catch(() => {});
  out.xss = await page.evaluate(() => window.__xss ?? null);
  out.xss_dom = await page.$eval('.message.assistant .body', (b) => ({
    scripts: b.querySelectorAll('script').length, handlers: b.querySelectorAll('[onerror]').length,
    js_links: [...b.querySelectorAll('a')].filter((a) => (a.getAttribute('href') ?? '').startsWith('javascript:')).length,
    images: b.querySelectorAll('img').length, code_blocks: b.querySelectorAll('pre code').length,
    copy_buttons: b.querySelectorAll('pre .copy').length, link_text: b.querySelector('a')?.textContent ?? null,
  }));
  await shot('08-xss');
  await page.unroute('**/v1/chat/completions');

  // 10. A reasoning model's answer (stories260K does not reason, so the stream is played back):
  // the reasoning apart, collapsed, with its token count.
  const sse = (obj) => `data: ${JSON.stringify(obj)}\n\n`;
  await page.route('**/v1/chat/completions', (route) => route.fulfill({
    status: 200, contentType: 'text/event-stream',
    body: sse({ choices: [{ index: 0, delta: { reasoning_content: 'The user wants **a fox**.' } }] }) +
      sse({ choices: [{ index: 0, delta: { content: 'Once there was a fox.\n\n$$E = mc^2$$\n\nIts speed $v^2$ cost $5 and $6.' } }] }) +
      sse({ choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] }) +
      sse({ choices: [], usage: { prompt_tokens: 9, completion_tokens: 12, total_tokens: 21, completion_tokens_details: { reasoning_tokens: 7 } } }) +
      'data: [DONE]\n\n',
  }));
  await page.fill('#input', 'Think first');
  await page.press('#input', 'Enter');
  await idle();
  out.reasoning = await page.$$eval('.message.assistant', (els) => {
    const m = els.at(-1);
    const d = m.querySelector('details.reasoning');
    return { summary: d?.querySelector('summary').textContent ?? null, open: d?.open ?? null,
      body: d?.querySelector('.reasoning-body').innerHTML.trim() ?? null,
      answer: m.querySelector('.body p').textContent.trim(), math: m.querySelectorAll('.body .katex').length,
      display_math: m.querySelectorAll('.body .katex-display').length, tex: [...m.querySelectorAll('.body .katex-html')].map((a) => a.textContent.replace(/\s/g, '')),
      dollars: m.querySelectorAll('.body p')[2]?.textContent.includes('cost $5 and $6') ?? false,
      stats: m.querySelector('.stats')?.textContent ?? null };
  });
  await page.click('.message.assistant:last-child details.reasoning summary');
  await shot('09-reasoning');
  await page.unroute('**/v1/chat/completions');
  out.page_errors = errors;

  // 11. A server with --api-key: the page asks for the key, then works.
  const keyed = await context.newPage();
  await keyed.goto(`http://127.0.0.1:${keyedPort}/`);
  await keyed.waitForSelector('#api-key-dialog[open]');
  await keyed.screenshot({ path: `${outDir}/10-api-key.png` });
  await keyed.fill('#api-key', 'sk-web-test');
  await keyed.click('#save-api-key');
  await keyed.waitForFunction(() => document.getElementById('model-name').textContent !== '…');
  out.keyed_model = await keyed.textContent('#model-name');
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
