// Drives `owl serve`'s Ollama API with the official `ollama` npm package (issue #21): one
// scenario per run, what it observed printed as one JSON line for the GoogleTest that started
// it (tests/server/ollama_client_test.cpp). usage: node ollama_client.mjs NPM_PREFIX PORT SCENARIO
import { createRequire } from 'node:module';

const [npmPrefix, port, scenario] = process.argv.slice(2);
const { Ollama } = createRequire(npmPrefix + '/')('ollama');
const ollama = new Ollama({ host: `http://127.0.0.1:${port}` });

const story = [{ role: 'user', content: 'Once upon a time' }];
const greedy = { temperature: 0, num_predict: 20 };
const weatherTool = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'The weather in a city',
    parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
  },
};

const moodSchema = {
  type: 'object', additionalProperties: false, required: ['mood', 'age'],
  properties: { mood: { enum: ['happy', 'sad'] }, age: { type: 'integer', minimum: 1, maximum: 9 } },
};

// A streamed answer gathered: content, thinking and tool calls as the parts build them.
async function gather(parts, key) {
  const out = { content: '', thinking: '', toolCalls: [], parts: 0, last: null };
  for await (const part of parts) {
    out.parts++;
    const piece = key === 'message' ? part.message : { content: part.response, thinking: part.thinking };
    out.content += piece.content ?? '';
    out.thinking += piece.thinking ?? '';
    out.toolCalls.push(...(piece.tool_calls ?? []));
    if (part.done) out.last = part;
  }
  return out;
}

// What the client threw: its status and message.
async function failure(promise) {
  try {
    await promise;
    return null;
  } catch (e) {
    return { status: e.status_code ?? null, message: e.error ?? e.message };
  }
}

const scenarios = {
  // Against the real stories260K server (model "stories260K-f32").
  async listing() {
    const tags = await ollama.list();
    const show = await ollama.show({ model: 'stories260K-f32' });
    const ps = await ollama.ps();
    const version = await ollama.version();
    return {
      names: tags.models.map((m) => m.name), size: tags.models[0].size, family: tags.models[0].details.family,
      model_info: show.model_info, capabilities: show.capabilities,
      ps: ps.models.map((m) => m.name), context_length: ps.models[0].context_length, version: version.version,
    };
  },
  async chat() {
    const r = await ollama.chat({ model: 'stories260K-f32', messages: story, options: greedy, stream: false });
    return { role: r.message.role, content: r.message.content, done: r.done, done_reason: r.done_reason,
      eval_count: r.eval_count, prompt_eval_count: r.prompt_eval_count, total_duration: r.total_duration,
      eval_duration: r.eval_duration };
  },
  async chat_stream() {
    const whole = await ollama.chat({ model: 'stories260K-f32:latest', messages: story, options: greedy, stream: false });
    const s = await gather(await ollama.chat({ model: 'stories260K-f32:latest', messages: story, options: greedy, stream: true }), 'message');
    return { whole: whole.message.content, streamed: s.content, parts: s.parts, done_reason: s.last.done_reason,
      eval_count: s.last.eval_count };
  },
  async generate() {
    const whole = await ollama.generate({ model: 'stories260K-f32', prompt: 'Once upon a time', options: greedy, stream: false });
    const s = await gather(await ollama.generate({ model: 'stories260K-f32', prompt: 'Once upon a time', options: greedy, stream: true }), 'response');
    const load = await ollama.generate({ model: 'stories260K-f32', prompt: '', stream: false });
    return { whole: whole.response, streamed: s.content, parts: s.parts, done_reason: whole.done_reason,
      eval_count: whole.eval_count, load_reason: load.done_reason };
  },
  async stop_and_seed() {
    const full = await ollama.chat({ model: 'stories260K-f32', messages: story, options: greedy, stream: false });
    const words = full.message.content.trim().split(' ');
    const stop = words[Math.min(3, words.length - 1)];
    const stopped = await ollama.chat({ model: 'stories260K-f32', messages: story, options: { ...greedy, stop: [stop] }, stream: false });
    const sampled = { temperature: 1, seed: 7, num_predict: 12 };
    const a = await ollama.chat({ model: 'stories260K-f32', messages: story, options: sampled, stream: false });
    const b = await ollama.chat({ model: 'stories260K-f32', messages: story, options: sampled, stream: false });
    return { full: full.message.content, stop, stopped: stopped.message.content, same_seed: a.message.content === b.message.content };
  },
  // Structured output: format "json" and a JSON Schema, on chat and generate, whole and
  // streamed; the GoogleTest parses and checks each answer.
  async format() {
    const chat = (format, stream) => ollama.chat({ model: 'stories260K-f32', messages: story, format, options: { temperature: 0, num_predict: 64 }, stream });
    const generate = (format, stream) => ollama.generate({ model: 'stories260K-f32', prompt: 'Once upon a time', format, options: { temperature: 0, num_predict: 64 }, stream });
    const out = {};
    for (const [name, format] of [['json', 'json'], ['schema', moodSchema]]) {
      const c = await chat(format, false);
      const cs = await gather(await chat(format, true), 'message');
      const g = await generate(format, false);
      const gs = await gather(await generate(format, true), 'response');
      out[name] = { chat: c.message.content, chat_reason: c.done_reason, chat_streamed: cs.content,
        generate: g.response, generate_reason: g.done_reason, generate_streamed: gs.content };
    }
    return out;
  },
  async errors() {
    return {
      missing_model: await failure(ollama.chat({ model: 'no-such-model', messages: story, stream: false })),
      bad_option: await failure(ollama.chat({ model: 'stories260K-f32', messages: story, options: { temperature: 'hot' }, stream: false })),
      bad_role: await failure(ollama.chat({ model: 'stories260K-f32', messages: [{ role: 'wizard', content: 'hi' }], stream: false })),
      bad_schema: await failure(ollama.chat({ model: 'stories260K-f32', messages: story, format: { not: {} }, stream: false })),
      unsatisfiable: await failure(ollama.generate({ model: 'stories260K-f32', prompt: 'x', format: { type: 'integer', minimum: 5, maximum: 1 }, stream: false })),
      bad_format: await failure(ollama.chat({ model: 'stories260K-f32', messages: story, format: 'yaml', stream: false })),
    };
  },

  // Against a server whose hub is tests/hub's fixture (repo "acme/tiny-GGUF").
  async pull() {
    const statuses = [];
    let last = null;
    for await (const part of await ollama.pull({ model: 'hf.co/acme/tiny-GGUF:Q4_K_M', stream: true })) {
      statuses.push(part.status);
      last = part;
    }
    const again = await ollama.pull({ model: 'acme/tiny-GGUF:Q4_K_M', stream: false });
    return { statuses, path: last.path, downloaded: last.files_downloaded, again: again.status,
      again_downloaded: again.files_downloaded, missing: await failure(ollama.pull({ model: 'acme/no-such-GGUF', stream: false })),
      not_hub: await failure(ollama.pull({ model: 'llama3.2', stream: false })) };
  },

  // Against scripted generations with Qwen3's template (model "stories").
  async think() {
    const r = await ollama.chat({ model: 'stories', messages: story, think: true, stream: false });
    const s = await gather(await ollama.chat({ model: 'stories', messages: story, think: true, stream: true }), 'message');
    return { thinking: r.message.thinking, content: r.message.content, streamed_thinking: s.thinking, streamed_content: s.content };
  },
  async tools() {
    const question = [{ role: 'user', content: 'What is the weather in Paris?' }];
    const r = await ollama.chat({ model: 'stories', messages: question, tools: [weatherTool], stream: false });
    const call = r.message.tool_calls?.[0];
    const second = await ollama.chat({
      model: 'stories', stream: false,
      messages: [...question, r.message, { role: 'tool', content: '21 degrees', tool_name: 'get_weather' }],
    });
    return { calls: r.message.tool_calls?.length ?? 0, name: call?.function.name, arguments: call?.function.arguments,
      done_reason: r.done_reason, answer: second.message.content };
  },
};

const run = scenarios[scenario];
if (!run) {
  console.error(`unknown scenario '${scenario}'`);
  process.exit(2);
}
console.log(JSON.stringify(await run()));
