// Drives `owl serve` with the official `openai` npm client (issue #19): one scenario per run,
// what it observed printed as one JSON line for the GoogleTest that started it to check
// (tests/server/openai_client_test.cpp). usage: node openai_client.mjs NPM_PREFIX PORT SCENARIO
import { createRequire } from 'node:module';

const [npmPrefix, port, scenario] = process.argv.slice(2);
const { OpenAI } = createRequire(npmPrefix + '/')('openai');
const client = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: 'sk-owl-test', maxRetries: 0, timeout: 60000 });

const story = [{ role: 'user', content: 'Once upon a time' }];
const weatherTool = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'The weather in a city',
    parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
  },
};
const weatherQuestion = [{ role: 'user', content: 'What is the weather in Paris?' }];

// A streamed chat answer gathered: content, reasoning and tool calls as the deltas build them.
async function gather(stream) {
  const out = { content: '', reasoning: '', toolCalls: [], finish: null, usage: null, chunks: 0, mixed: 0 };
  for await (const chunk of stream) {
    out.chunks++;
    if (chunk.usage) out.usage = chunk.usage;
    const choice = chunk.choices[0];
    if (!choice) continue;
    const d = choice.delta ?? {};
    if (d.content) out.content += d.content;
    if (d.reasoning_content) out.reasoning += d.reasoning_content;
    if (d.content && d.reasoning_content) out.mixed++;
    for (const call of d.tool_calls ?? []) {
      const slot = (out.toolCalls[call.index] ??= { id: '', name: '', arguments: '' });
      if (call.id) slot.id = call.id;
      if (call.function?.name) slot.name += call.function.name;
      if (call.function?.arguments) slot.arguments += call.function.arguments;
    }
    if (choice.finish_reason) out.finish = choice.finish_reason;
  }
  return out;
}

const scenarios = {
  // Against the real stories260K server (model "stories260K-f32").
  async completions() {
    const r = await client.completions.create({ model: 'stories260K-f32', prompt: 'Once upon a time', max_tokens: 5, temperature: 0 });
    return { text: r.choices[0].text, finish: r.choices[0].finish_reason, usage: r.usage };
  },
  async chat() {
    const r = await client.chat.completions.create({ model: 'stories260K-f32', messages: story, max_tokens: 20, temperature: 0 });
    return { role: r.choices[0].message.role, content: r.choices[0].message.content, finish: r.choices[0].finish_reason, usage: r.usage };
  },
  async chat_stream_usage() {
    const whole = await client.chat.completions.create({ model: 'stories260K-f32', messages: story, max_tokens: 20, temperature: 0 });
    const s = await gather(await client.chat.completions.create({
      model: 'stories260K-f32', messages: story, max_tokens: 20, temperature: 0, stream: true, stream_options: { include_usage: true },
    }));
    return { whole: whole.choices[0].message.content, streamed: s.content, finish: s.finish, usage: s.usage, chunks: s.chunks };
  },
  async stop() {
    const base = await client.chat.completions.create({ model: 'stories260K-f32', messages: story, max_tokens: 40, temperature: 0 });
    const full = base.choices[0].message.content;
    const stop = full.slice(12, 18);
    const r = await client.chat.completions.create({ model: 'stories260K-f32', messages: story, max_tokens: 40, temperature: 0, stop: [stop] });
    return { full, stop, content: r.choices[0].message.content, finish: r.choices[0].finish_reason };
  },
  async max_completion_tokens() {
    const r = await client.chat.completions.create({ model: 'stories260K-f32', messages: story, max_completion_tokens: 3, temperature: 0 });
    return { finish: r.choices[0].finish_reason, usage: r.usage };
  },
  async seed() {
    const ask = async (seed) => (await client.chat.completions.create({
      model: 'stories260K-f32', messages: story, max_tokens: 30, temperature: 1, seed,
    })).choices[0].message.content;
    return { first: await ask(7), again: await ask(7), other: await ask(8) };
  },
  async models() {
    const list = await client.models.list();
    const one = await client.models.retrieve('stories260K-f32');
    let missing = null;
    try {
      await client.models.retrieve('gpt-4o');
    } catch (e) {
      missing = { status: e.status, code: e.code ?? e.error?.code ?? null };
    }
    return { ids: list.data.map((m) => m.id), id: one.id, object: one.object, missing };
  },

  // Against the scripted server (model "stories", Qwen3's template, tokens from a script).
  async reasoning_stream() {
    const s = await gather(await client.chat.completions.create({ model: 'stories', messages: story, max_tokens: 200, stream: true }));
    return { reasoning: s.reasoning, content: s.content, mixed: s.mixed, finish: s.finish };
  },
  async tools() {
    const r = await client.chat.completions.create({ model: 'stories', messages: weatherQuestion, tools: [weatherTool], max_tokens: 200 });
    const m = r.choices[0].message;
    return { finish: r.choices[0].finish_reason, content: m.content, tool_calls: m.tool_calls };
  },
  async tools_stream() {
    const s = await gather(await client.chat.completions.create({
      model: 'stories', messages: weatherQuestion, tools: [weatherTool], max_tokens: 200, stream: true,
    }));
    return { finish: s.finish, content: s.content, tool_calls: s.toolCalls };
  },
  async tool_loop() {
    const first = await client.chat.completions.create({ model: 'stories', messages: weatherQuestion, tools: [weatherTool], max_tokens: 200 });
    const call = first.choices[0].message;  // content null, tool_calls set: sent back as is
    const messages = [...weatherQuestion, call, { role: 'tool', tool_call_id: call.tool_calls[0].id, content: '{"celsius": 21}' }];
    const second = await client.chat.completions.create({ model: 'stories', messages, tools: [weatherTool], max_tokens: 200 });
    return {
      first_finish: first.choices[0].finish_reason,
      first_content: call.content,
      arguments: call.tool_calls[0].function.arguments,
      second_finish: second.choices[0].finish_reason,
      second_content: second.choices[0].message.content,
    };
  },
};

if (!scenarios[scenario]) {
  console.error(`unknown scenario '${scenario}'; known: ${Object.keys(scenarios).join(', ')}`);
  process.exit(2);
}
try {
  console.log(JSON.stringify(await scenarios[scenario]()));
} catch (e) {
  console.error(`scenario ${scenario} failed: ${e.stack ?? e}`);
  process.exit(1);
}
