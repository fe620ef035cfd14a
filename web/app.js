// owl's chat page: conversations kept in localStorage, answers streamed from owl's OpenAI API
// (/v1/chat/completions) and rendered as Markdown. Model output is untrusted: it becomes HTML
// only through marked (Markdown) and then DOMPurify (sanitiser), and the server's
// Content-Security-Policy forbids inline scripts besides.
'use strict';

const $ = (id) => document.getElementById(id);
const KEYS = { conversations: 'owl.conversations', current: 'owl.current', settings: 'owl.settings', apiKey: 'owl.apiKey' };
const DEFAULT_SETTINGS = { system: '', temperature: 0.7, topP: 0.95, maxTokens: null, thinking: true, budget: null };

const state = {
  conversations: load(KEYS.conversations, []),
  current: localStorage.getItem(KEYS.current),
  settings: { ...DEFAULT_SETTINGS, ...load(KEYS.settings, {}) },
  apiKey: localStorage.getItem(KEYS.apiKey) || '',
  model: null,
  nCtx: 0,
  controller: null, // the answer being streamed, for the stop button
};

function load(key, fallback) {
  try {
    const v = JSON.parse(localStorage.getItem(key));
    return v ?? fallback;
  } catch {
    return fallback;
  }
}

function save() {
  localStorage.setItem(KEYS.conversations, JSON.stringify(state.conversations));
  if (state.current) localStorage.setItem(KEYS.current, state.current);
}

function newId() {
  return Date.now().toString(36) + Math.random().toString(36).slice(2, 8);
}

function conversation() {
  return state.conversations.find((c) => c.id === state.current);
}

function headers() {
  const h = { 'Content-Type': 'application/json' };
  if (state.apiKey) h.Authorization = `Bearer ${state.apiKey}`;
  return h;
}

// ---- server -------------------------------------------------------------------------------

// Reads the served model; a 401 asks for the API key and tries again.
async function connect() {
  const r = await fetch('/v1/models', { headers: headers() });
  if (r.status === 401) {
    $('api-key').value = state.apiKey;
    $('api-key-dialog').showModal();
    return;
  }
  if (!r.ok) {
    setStatus(`cannot reach the server: ${r.status}`);
    return;
  }
  const m = (await r.json()).data[0];
  state.model = m.id;
  state.nCtx = m.meta?.n_ctx ?? 0;
  $('model-name').textContent = m.id;
  renderHeader();
}

function setStatus(text) {
  $('status').textContent = text;
}

// ---- rendering ----------------------------------------------------------------------------

// Math ($$…$$ and \[…\] as blocks, $…$ and \(…\) inline) is typeset by KaTeX and kept out
// of Markdown's way behind placeholders; the whole, math included, then goes through the sanitiser.
const MATH = /\$\$([\s\S]+?)\$\$|\\\[([\s\S]+?)\\\]|\\\(([\s\S]+?)\\\)|\$([^\s$](?:[^$\n]*?[^\s$])?)\$(?!\d)/g;

function typesetMath(text) {
  const pieces = [];
  // Code spans and blocks keep their dollars.
  const parts = text.split(/(```[\s\S]*?(?:```|$)|`[^`\n]*`)/);
  const masked = parts.map((part, i) => (i % 2 ? part : part.replace(MATH, (m, block, bracket, paren, inline) => {
    const tex = block ?? bracket ?? paren ?? inline;
    const display = block !== undefined || bracket !== undefined;
    try {
      pieces.push(katex.renderToString(tex, { displayMode: display, throwOnError: false, trust: false, output: 'htmlAndMathml' }));
    } catch {
      return m;
    }
    return `@@owlmath${pieces.length - 1}@@`;
  }))).join('');
  return { text: masked, pieces };
}

function renderMarkdown(el, text) {
  const { text: withPlaceholders, pieces } = typesetMath(text ?? '');
  const html = marked.parse(withPlaceholders).replace(/@@owlmath(\d+)@@/g, (m, i) => pieces[Number(i)] ?? m);
  el.innerHTML = DOMPurify.sanitize(html);
  for (const pre of el.querySelectorAll('pre')) {
    const copy = document.createElement('button');
    copy.type = 'button';
    copy.className = 'copy';
    copy.textContent = 'Copy';
    copy.addEventListener('click', async () => {
      await navigator.clipboard?.writeText(pre.querySelector('code')?.textContent ?? pre.textContent);
      copy.textContent = 'Copied';
    });
    pre.appendChild(copy);
  }
}

function renderSidebar() {
  const list = $('conversations');
  list.replaceChildren();
  for (const c of state.conversations) {
    const li = document.createElement('li');
    li.dataset.id = c.id;
    if (c.id === state.current) li.className = 'active';
    const title = document.createElement('span');
    title.className = 'title';
    title.textContent = c.title || 'New chat';
    const rename = document.createElement('button');
    rename.type = 'button';
    rename.className = 'rename';
    rename.textContent = '✎';
    rename.title = 'Rename';
    rename.addEventListener('click', (e) => {
      e.stopPropagation();
      const input = document.createElement('input');
      input.className = 'rename-input';
      input.value = c.title;
      input.addEventListener('keydown', (k) => {
        if (k.key === 'Enter') {
          c.title = input.value.trim() || c.title;
          save();
          renderSidebar();
        }
      });
      title.replaceWith(input);
      input.focus();
    });
    const del = document.createElement('button');
    del.type = 'button';
    del.className = 'delete';
    del.textContent = '×';
    del.title = 'Delete';
    del.addEventListener('click', (e) => {
      e.stopPropagation();
      state.conversations = state.conversations.filter((x) => x.id !== c.id);
      if (state.current === c.id) state.current = state.conversations[0]?.id ?? null;
      save();
      render();
    });
    li.append(title, rename, del);
    li.addEventListener('click', () => {
      if (state.controller) return;
      state.current = c.id;
      save();
      render();
    });
    list.appendChild(li);
  }
}

function messageElement(m, index) {
  const el = document.createElement('div');
  el.className = `message ${m.role}` + (m.error ? ' error' : '');
  el.dataset.index = index;
  const role = document.createElement('div');
  role.className = 'role';
  role.textContent = m.role === 'user' ? 'You' : state.model ?? 'owl';
  if (m.role === 'user') {
    const edit = document.createElement('button');
    edit.type = 'button';
    edit.className = 'edit';
    edit.textContent = 'Edit';
    edit.addEventListener('click', () => editMessage(el, index));
    role.appendChild(edit);
  }
  el.appendChild(role);
  if (m.reasoning) {
    const details = document.createElement('details');
    details.className = 'reasoning';
    const summary = document.createElement('summary');
    const s = m.stats ?? {};
    summary.textContent = 'Reasoning' + (s.reasoningTokens ? ` · ${s.reasoningTokens} tokens` : '') +
      (s.reasoningSeconds ? ` · ${s.reasoningSeconds.toFixed(1)} s` : '');
    const body = document.createElement('div');
    body.className = 'reasoning-body';
    renderMarkdown(body, m.reasoning);
    details.append(summary, body);
    el.appendChild(details);
  }
  const body = document.createElement('div');
  body.className = 'body';
  if (m.role === 'user') body.textContent = m.content;
  else renderMarkdown(body, m.error ? `**Error:** ${m.error}` : m.content);
  el.appendChild(body);
  if (m.stats?.tokens) {
    const stats = document.createElement('div');
    stats.className = 'stats';
    stats.textContent = `${m.stats.tokens} tokens · ${m.stats.tokensPerSecond.toFixed(1)} tokens/s` + (m.stats.stopped ? ' · stopped' : '');
    el.appendChild(stats);
  }
  return el;
}

function renderMessages() {
  const c = conversation();
  const box = $('messages');
  box.replaceChildren(...(c?.messages ?? []).map(messageElement));
  box.scrollTop = box.scrollHeight;
  const last = c?.messages.at(-1);
  $('regenerate').hidden = !(last && last.role === 'assistant') || !!state.controller;
}

function renderHeader() {
  const c = conversation();
  const u = c?.usage;
  $('context-use').textContent = u && state.nCtx ? `context ${u.total} / ${state.nCtx} tokens` : state.nCtx ? `context 0 / ${state.nCtx} tokens` : '';
  const last = [...(c?.messages ?? [])].reverse().find((m) => m.stats?.tokensPerSecond);
  $('speed').textContent = last ? `last answer ${last.stats.tokensPerSecond.toFixed(1)} tokens/s` : '';
}

function render() {
  renderSidebar();
  renderMessages();
  renderHeader();
}

// ---- conversations ------------------------------------------------------------------------

function newConversation() {
  const c = { id: newId(), title: '', created: Date.now(), messages: [], usage: null };
  state.conversations.unshift(c);
  state.current = c.id;
  save();
  render();
  return c;
}

function editMessage(el, index) {
  if (state.controller) return;
  const c = conversation();
  const area = document.createElement('textarea');
  area.className = 'edit-input';
  area.value = c.messages[index].content;
  const resend = document.createElement('button');
  resend.type = 'button';
  resend.className = 'resend';
  resend.textContent = 'Send';
  resend.addEventListener('click', () => {
    c.messages.splice(index);
    c.messages.push({ role: 'user', content: area.value });
    save();
    generate();
  });
  el.querySelector('.body').replaceChildren(area, resend);
  area.focus();
}

// ---- generation ---------------------------------------------------------------------------

function requestBody(c) {
  const s = state.settings;
  const messages = [];
  if (s.system) messages.push({ role: 'system', content: s.system });
  for (const m of c.messages) if (!m.error) messages.push({ role: m.role, content: m.content });
  const body = {
    model: state.model, messages, stream: true, stream_options: { include_usage: true },
    temperature: s.temperature, top_p: s.topP, chat_template_kwargs: { enable_thinking: s.thinking },
  };
  if (s.maxTokens) body.max_tokens = s.maxTokens;
  if (s.thinking && s.budget !== null && s.budget !== '') body.thinking_budget = Number(s.budget);
  return body;
}

// Streams an answer to the conversation's last user message into a new assistant message.
async function generate() {
  const c = conversation();
  const answer = { role: 'assistant', content: '', reasoning: '' };
  c.messages.push(answer);
  const controller = new AbortController();
  state.controller = controller;
  document.body.dataset.busy = '1';
  $('stop').hidden = false;
  $('send').disabled = true;
  setStatus('');
  renderMessages();
  const box = $('messages');
  const started = performance.now();
  let firstToken = null, reasoningEnd = null, pieces = 0, usage = null;
  const update = () => {
    box.lastChild.replaceWith(messageElement(answer, c.messages.length - 1));
    box.scrollTop = box.scrollHeight;
  };
  try {
    const r = await fetch('/v1/chat/completions', { method: 'POST', headers: headers(), body: JSON.stringify(requestBody(c)), signal: controller.signal });
    if (!r.ok) {
      const err = await r.json().catch(() => ({}));
      if (r.status === 401) $('api-key-dialog').showModal();
      throw new Error(err.error?.message ?? `HTTP ${r.status}`);
    }
    const reader = r.body.getReader();
    const decoder = new TextDecoder();
    let buf = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true });
      let end;
      while ((end = buf.indexOf('\n\n')) >= 0) {
        const event = buf.slice(0, end);
        buf = buf.slice(end + 2);
        if (!event.startsWith('data: ') || event === 'data: [DONE]') continue;
        const chunk = JSON.parse(event.slice(6));
        if (chunk.error) throw new Error(chunk.error.message);
        if (chunk.usage) usage = chunk.usage;
        const d = chunk.choices?.[0]?.delta ?? {};
        if (d.reasoning_content) {
          answer.reasoning += d.reasoning_content;
          pieces++;
        }
        if (d.content) {
          if (answer.reasoning && reasoningEnd === null) reasoningEnd = performance.now();
          answer.content += d.content;
          pieces++;
        }
        if ((d.content || d.reasoning_content) && firstToken === null) firstToken = performance.now();
        if (d.content || d.reasoning_content) update();
      }
    }
  } catch (e) {
    if (e.name !== 'AbortError') answer.error = e.message;
  }
  const end = performance.now();
  const seconds = Math.max((end - (firstToken ?? started)) / 1000, 1e-3);
  const tokens = usage?.completion_tokens ?? pieces;
  answer.stats = {
    tokens, tokensPerSecond: tokens / seconds, stopped: controller.signal.aborted,
    reasoningTokens: usage?.completion_tokens_details?.reasoning_tokens ?? 0,
    reasoningSeconds: answer.reasoning ? ((reasoningEnd ?? end) - (firstToken ?? started)) / 1000 : 0,
  };
  if (usage) c.usage = { prompt: usage.prompt_tokens, completion: usage.completion_tokens, total: usage.total_tokens };
  state.controller = null;
  delete document.body.dataset.busy;
  $('stop').hidden = true;
  $('send').disabled = false;
  save();
  render();
}

async function send(text) {
  if (!text.trim() || state.controller) return;
  if (!state.model) await connect();
  const c = conversation() ?? newConversation();
  if (!c.title) c.title = text.trim().slice(0, 40);
  c.messages.push({ role: 'user', content: text });
  save();
  renderSidebar();
  await generate();
}

// ---- settings, import, export -------------------------------------------------------------

function openSettings() {
  const s = state.settings;
  $('set-system').value = s.system;
  $('set-temperature').value = s.temperature;
  $('set-top-p').value = s.topP;
  $('set-max-tokens').value = s.maxTokens ?? '';
  $('set-thinking').checked = s.thinking;
  $('set-budget').value = s.budget ?? '';
  $('settings').showModal();
}

function saveSettings() {
  const num = (id) => ($(id).value === '' ? null : Number($(id).value));
  state.settings = {
    system: $('set-system').value, temperature: num('set-temperature') ?? DEFAULT_SETTINGS.temperature,
    topP: num('set-top-p') ?? DEFAULT_SETTINGS.topP, maxTokens: num('set-max-tokens'),
    thinking: $('set-thinking').checked, budget: num('set-budget'),
  };
  localStorage.setItem(KEYS.settings, JSON.stringify(state.settings));
}

function exportConversations() {
  const blob = new Blob([JSON.stringify({ owl_conversations: 1, conversations: state.conversations }, null, 2)], { type: 'application/json' });
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob);
  a.download = 'owl-conversations.json';
  a.click();
  URL.revokeObjectURL(a.href);
}

async function importConversations(file) {
  try {
    const data = JSON.parse(await file.text());
    const list = Array.isArray(data) ? data : data.conversations;
    if (!Array.isArray(list)) throw new Error('no "conversations" array');
    for (const c of list) {
      if (!c || !Array.isArray(c.messages)) throw new Error('a conversation without "messages"');
      const messages = c.messages.filter((m) => m && (m.role === 'user' || m.role === 'assistant') && typeof m.content === 'string');
      const usage = Number.isFinite(c.usage?.total) ? { prompt: c.usage.prompt, completion: c.usage.completion, total: c.usage.total } : null;
      state.conversations.push({ id: newId(), title: String(c.title ?? ''), created: c.created ?? Date.now(), messages, usage });
    }
    save();
    render();
    setStatus(`imported ${list.length} conversation(s)`);
  } catch (e) {
    setStatus(`cannot import ${file.name}: ${e.message}`);
  }
}

// ---- wiring -------------------------------------------------------------------------------

$('composer').addEventListener('submit', (e) => {
  e.preventDefault();
  const text = $('input').value;
  $('input').value = '';
  send(text);
});
$('input').addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey) {
    e.preventDefault();
    $('composer').requestSubmit();
  }
});
$('stop').addEventListener('click', () => state.controller?.abort());
$('regenerate').addEventListener('click', () => {
  const c = conversation();
  if (state.controller || c?.messages.at(-1)?.role !== 'assistant') return;
  c.messages.pop();
  generate();
});
$('new-chat').addEventListener('click', () => !state.controller && newConversation());
$('export').addEventListener('click', exportConversations);
$('import').addEventListener('change', (e) => e.target.files[0] && importConversations(e.target.files[0]));
$('open-settings').addEventListener('click', openSettings);
$('save-settings').addEventListener('click', saveSettings);
$('save-api-key').addEventListener('click', () => {
  state.apiKey = $('api-key').value.trim();
  localStorage.setItem(KEYS.apiKey, state.apiKey);
  connect();
});

if (!conversation()) state.current = state.conversations[0]?.id ?? null;
render();
connect();
