// Tool calls through the official `openai` npm client against `owl serve` with stories260K
// (no chat template: the Hermes <tool_call> format): tool_choice required / named / none,
// strict arguments, streamed argument deltas put together by the client's stream helper, and
// the 400s for a missing named function and a strict schema owl cannot enforce. One scenario
// per run, what it observed printed as one JSON line (tests/server/openai_tools_test.cpp; the
// family_stream scenario: tests/server/marker_tool_calls_test.cpp).
// usage: node openai_tools.mjs NPM_PREFIX PORT SCENARIO
import { createRequire } from 'node:module';

const [npmPrefix, port, scenario] = process.argv.slice(2);
const { OpenAI } = createRequire(npmPrefix + '/')('openai');
const client = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: 'sk-owl-test', maxRetries: 0, timeout: 60000 });

const weather = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'The weather in a city',
    strict: true,
    parameters: {
      type: 'object',
      properties: { city: { type: 'string', maxLength: 12 }, days: { type: 'integer', minimum: 1, maximum: 9 } },
      required: ['city', 'days'],
      additionalProperties: false,
    },
  },
};
const time = {
  type: 'function',
  function: {
    name: 'get_time',
    parameters: { type: 'object', properties: { zone: { enum: ['UTC', 'CET'] } }, required: ['zone'], additionalProperties: false },
  },
};
const question = [{ role: 'user', content: 'What is the weather in Paris?' }];
const base = { model: 'stories260K-f32', messages: question, tools: [weather, time], max_tokens: 200, temperature: 1 };

// What a (non-streamed) answer holds.
function answer(r) {
  const m = r.choices[0].message;
  return {
    finish: r.choices[0].finish_reason,
    content: m.content,
    calls: (m.tool_calls ?? []).map((c) => ({ id: c.id, type: c.type, name: c.function.name, arguments: c.function.arguments })),
  };
}

async function refused(body) {
  try {
    await client.chat.completions.create(body);
    return { status: 200 };
  } catch (e) {
    return { status: e.status, param: e.param ?? e.error?.param ?? null, message: e.error?.message ?? e.message };
  }
}

const scenarios = {
  async required() {
    const out = [];
    for (const seed of [1, 2, 3]) out.push(answer(await client.chat.completions.create({ ...base, tool_choice: 'required', parallel_tool_calls: false, seed })));
    return { answers: out };
  },
  async named() {
    const out = [];
    for (const seed of [1, 2, 3])
      out.push(answer(await client.chat.completions.create({ ...base, tool_choice: { type: 'function', function: { name: 'get_time' } }, seed })));
    return { answers: out };
  },
  async none() {
    const r = answer(await client.chat.completions.create({ ...base, tool_choice: 'none', max_tokens: 12, seed: 1 }));
    const plain = await client.chat.completions.create({ model: 'stories260K-f32', messages: question, max_tokens: 1 });
    const withNone = await client.chat.completions.create({ ...base, tool_choice: 'none', max_tokens: 1 });
    return { ...r, prompt_tokens: withNone.usage.prompt_tokens, plain_prompt_tokens: plain.usage.prompt_tokens };
  },
  // The client's stream helper joins the argument deltas; its events show they came in pieces.
  async stream() {
    const stream = client.chat.completions.stream({
      ...base, tool_choice: { type: 'function', function: { name: 'get_weather' } }, seed: 4,
    });
    let fragments = 0, doneArguments = null, doneName = null;
    stream.on('tool_calls.function.arguments.delta', () => fragments++);
    stream.on('tool_calls.function.arguments.done', (e) => {
      doneArguments = e.arguments;
      doneName = e.name;
    });
    const final = await stream.finalChatCompletion();
    // The same request answered whole, for comparison (same seed, same sampling).
    const whole = await client.chat.completions.create({
      ...base, tool_choice: { type: 'function', function: { name: 'get_weather' } }, seed: 4,
    });
    return { streamed: answer(final), whole: answer(whole), fragments, doneArguments, doneName };
  },
  // Against the marker-vocabulary server of tests/server/marker_tool_calls_test (DeepSeek, Kimi
  // K2 ...), whose answer is scripted: the stream helper joins the family's call from its deltas.
  async family_stream() {
    const tools = [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' }, days: { type: 'integer' } } } } }];
    const body = { model: 'markers', messages: [{ role: 'user', content: 'Weather in Paris?' }], tools, max_tokens: 400 };
    const stream = client.chat.completions.stream(body);
    let fragments = 0, contentDeltas = [];
    stream.on('tool_calls.function.arguments.delta', () => fragments++);
    stream.on('content.delta', (e) => contentDeltas.push(e.delta));
    const final = await stream.finalChatCompletion();
    const whole = await client.chat.completions.create(body);
    return { streamed: answer(final), whole: answer(whole), fragments, contentDeltas, reasoning: whole.choices[0].message.reasoning_content ?? null };
  },
  async bad_input() {
    return {
      missing: await refused({ ...base, tool_choice: { type: 'function', function: { name: 'get_stock' } } }),
      strict: await refused({
        ...base,
        tools: [{ type: 'function', function: { name: 'f', strict: true, parameters: { type: 'object', properties: { a: { type: 'array', uniqueItems: true } } } } }],
      }),
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
