// Drives `owl serve`'s Messages API with the official `@anthropic-ai/sdk` npm package (issue
// #21): one scenario per run, what it observed printed as one JSON line for the GoogleTest that
// started it (tests/server/anthropic_client_test.cpp).
// usage: node anthropic_client.mjs NPM_PREFIX PORT SCENARIO
import { createRequire } from 'node:module';

const [npmPrefix, port, scenario] = process.argv.slice(2);
const Anthropic = createRequire(npmPrefix + '/')('@anthropic-ai/sdk').default;
const client = new Anthropic({ baseURL: `http://127.0.0.1:${port}`, apiKey: 'sk-owl-test', maxRetries: 0, timeout: 60000 });

const story = [{ role: 'user', content: 'Once upon a time' }];
const greedy = { model: 'stories260K-f32', max_tokens: 20, temperature: 0 };
const weatherTool = {
  name: 'get_weather',
  description: 'The weather in a city',
  input_schema: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
};

const text = (m) => m.content.filter((b) => b.type === 'text').map((b) => b.text).join('');

// A raw event stream gathered: the event types in order, the text and thinking deltas.
async function gather(stream) {
  const out = { events: [], text: '', thinking: '', json: '', blocks: [], stop_reason: null, usage: null, input_tokens: null };
  for await (const e of stream) {
    out.events.push(e.type);
    if (e.type === 'message_start') out.input_tokens = e.message.usage.input_tokens;
    if (e.type === 'content_block_start') out.blocks.push(e.content_block.type);
    if (e.type === 'content_block_delta') {
      if (e.delta.type === 'text_delta') out.text += e.delta.text;
      if (e.delta.type === 'thinking_delta') out.thinking += e.delta.thinking;
      if (e.delta.type === 'input_json_delta') out.json += e.delta.partial_json;
    }
    if (e.type === 'message_delta') {
      out.stop_reason = e.delta.stop_reason;
      out.usage = e.usage;
    }
  }
  return out;
}

// What the client threw: the status and Anthropic's error type and message.
async function failure(promise) {
  try {
    await promise;
    return null;
  } catch (e) {
    return { status: e.status ?? null, type: e.error?.error?.type ?? null, message: e.error?.error?.message ?? e.message };
  }
}

const scenarios = {
  // Against the real stories260K server (model "stories260K-f32", key "sk-owl-test").
  async message() {
    const m = await client.messages.create({ ...greedy, messages: story });
    const counted = await client.messages.countTokens({ model: 'stories260K-f32', messages: story });
    return { type: m.type, role: m.role, id: m.id, model: m.model, blocks: m.content.map((b) => b.type), text: text(m),
      stop_reason: m.stop_reason, usage: m.usage, counted: counted.input_tokens };
  },
  async multi_turn() {
    const messages = [
      { role: 'user', content: 'Tell me a story.' },
      { role: 'assistant', content: [{ type: 'text', text: 'Once upon a time there was a cat.' }] },
      { role: 'user', content: [{ type: 'text', text: 'What did the cat do?' }] },
    ];
    const m = await client.messages.create({ ...greedy, system: [{ type: 'text', text: 'You tell stories.' }], messages });
    const counted = await client.messages.countTokens({ model: 'stories260K-f32', system: 'You tell stories.', messages });
    return { text: text(m), input_tokens: m.usage.input_tokens, counted: counted.input_tokens, stop_reason: m.stop_reason };
  },
  async stream() {
    const whole = await client.messages.create({ ...greedy, messages: story });
    const raw = await gather(await client.messages.create({ ...greedy, messages: story, stream: true }));
    const helper = await client.messages.stream({ ...greedy, messages: story }).finalMessage();
    return { whole: text(whole), raw, helper: text(helper), helper_stop: helper.stop_reason,
      helper_output_tokens: helper.usage.output_tokens };
  },
  async stop_sequences() {
    const full = await client.messages.create({ ...greedy, messages: story });
    const words = text(full).trim().split(' ');
    const stop = words[Math.min(3, words.length - 1)];
    const m = await client.messages.create({ ...greedy, messages: story, stop_sequences: [stop] });
    return { full: text(full), stop, text: text(m), stop_reason: m.stop_reason, stop_sequence: m.stop_sequence };
  },
  async errors() {
    const wrongKey = new Anthropic({ baseURL: `http://127.0.0.1:${port}`, apiKey: 'wrong', maxRetries: 0 });
    return {
      wrong_key: await failure(wrongKey.messages.create({ ...greedy, messages: story })),
      missing_model: await failure(client.messages.create({ ...greedy, model: 'claude-opus-4', messages: story })),
      no_max_tokens: await failure(client.messages.create({ model: 'stories260K-f32', messages: story })),
      hot: await failure(client.messages.create({ ...greedy, temperature: 1.5, messages: story })),
      image: await failure(client.messages.create({ ...greedy, messages: [{ role: 'user', content: [{ type: 'image', source: { type: 'url', url: 'http://x/y.png' } }] }] })),
      bad_role: await failure(client.messages.create({ ...greedy, messages: [{ role: 'system', content: 'hi' }] })),
    };
  },

  // Against scripted generations with Qwen3's template (model "stories").
  async thinking() {
    const req = { model: 'stories', max_tokens: 200, messages: story, thinking: { type: 'enabled', budget_tokens: 100 } };
    const m = await client.messages.create(req);
    const raw = await gather(await client.messages.create({ ...req, stream: true }));
    return { blocks: m.content.map((b) => b.type), thinking: m.content[0].thinking, text: text(m), stop_reason: m.stop_reason,
      raw };
  },
  async tools() {
    const question = [{ role: 'user', content: 'What is the weather in Paris?' }];
    const m = await client.messages.create({ model: 'stories', max_tokens: 200, messages: question, tools: [weatherTool] });
    const use = m.content.find((b) => b.type === 'tool_use');
    const streamed = await client.messages.stream({ model: 'stories', max_tokens: 200, messages: question, tools: [weatherTool] }).finalMessage();
    const answer = await client.messages.create({
      model: 'stories', max_tokens: 200, tools: [weatherTool],
      messages: [...question, { role: 'assistant', content: m.content },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: use.id, content: '21 degrees' }] }],
    });
    const streamedUse = streamed.content.find((b) => b.type === 'tool_use');
    return { stop_reason: m.stop_reason, name: use.name, input: use.input, id: use.id,
      streamed_stop: streamed.stop_reason, streamed_name: streamedUse?.name, streamed_input: streamedUse?.input,
      answer: text(answer), answer_stop: answer.stop_reason };
  },
};

const run = scenarios[scenario];
if (!run) {
  console.error(`unknown scenario '${scenario}'`);
  process.exit(2);
}
console.log(JSON.stringify(await run()));
