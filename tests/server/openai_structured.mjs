// Structured output and logit_bias through the official `openai` npm client against `owl serve`
// with stories260K (issue #20 items 3, 5 and 6): response_format json_schema / json_object on
// chat and completions, llama.cpp's json_schema and grammar fields (sent as extra body fields,
// as the client passes them), a schema after a reasoning block, logit_bias, and the 400s for a
// schema that is not JSON, an unsatisfiable schema, a regex owl cannot compile and a GBNF syntax
// error. One scenario per run, what it observed printed as one JSON line
// (tests/server/openai_structured_test.cpp).
// usage: node openai_structured.mjs NPM_PREFIX PORT SCENARIO [ARGS...]
import { createRequire } from 'node:module';

const [npmPrefix, port, scenario, ...args] = process.argv.slice(2);
const { OpenAI } = createRequire(npmPrefix + '/')('openai');
const client = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: 'sk-owl-test', maxRetries: 0, timeout: 60000 });

const model = 'stories260K-f32';
const question = [{ role: 'user', content: 'How are you?' }];
const schema = {
  type: 'object',
  properties: { mood: { enum: ['happy', 'sad'] }, age: { type: 'integer', minimum: 1, maximum: 9 } },
  required: ['mood', 'age'],
  additionalProperties: false,
};
const jsonSchema = { type: 'json_schema', json_schema: { name: 'mood', strict: true, schema } };

async function refused(request) {
  try {
    await request();
    return { status: 200 };
  } catch (e) {
    return { status: e.status ?? null, param: e.param ?? null, code: e.code ?? null, message: e.error?.message ?? e.message };
  }
}

async function streamedContent(body) {
  const stream = await client.chat.completions.create({ ...body, stream: true });
  let content = '', finish = null;
  for await (const chunk of stream)
    for (const c of chunk.choices) {
      content += c.delta?.content ?? '';
      if (c.finish_reason) finish = c.finish_reason;
    }
  return { content, finish };
}

const scenarios = {
  async chat_schema() {
    const answers = [];
    for (const seed of [1, 2, 3]) {
      const body = { model, messages: question, max_tokens: 64, seed, response_format: jsonSchema };
      const whole = await client.chat.completions.create(body);
      answers.push({ content: whole.choices[0].message.content, finish: whole.choices[0].finish_reason, streamed: await streamedContent(body) });
    }
    const object = await client.chat.completions.create({ model, messages: question, max_tokens: 200, seed: 1, response_format: { type: 'json_object' } });
    const cut = await client.chat.completions.create({ model, messages: question, max_tokens: 3, response_format: { type: 'json_object' } });
    // n = 2: each choice is held to the schema by its own constraint.
    const two = await client.chat.completions.create({ model, messages: question, max_tokens: 64, seed: 5, n: 2, response_format: jsonSchema });
    return {
      choices: two.choices.map((c) => ({ index: c.index, content: c.message.content, finish: c.finish_reason })),
      answers,
      object: { content: object.choices[0].message.content, finish: object.choices[0].finish_reason },
      cut: { content: cut.choices[0].message.content, finish: cut.choices[0].finish_reason },
    };
  },
  async completions() {
    const out = {};
    const ask = async (extra) => {
      const r = await client.completions.create({ model, prompt: 'Once upon a time', max_tokens: 64, seed: 2, ...extra });
      return { text: r.choices[0].text, finish: r.choices[0].finish_reason };
    };
    out.response_format = await ask({ response_format: jsonSchema });
    out.json_schema = await ask({ json_schema: schema });
    out.grammar = await ask({ grammar: 'root ::= ("yes" | "no") "!"' });
    const chat = await client.chat.completions.create({ model, messages: question, max_tokens: 16, grammar: 'root ::= ("yes" | "no") "!"' });
    out.chat_grammar = { text: chat.choices[0].message.content, finish: chat.choices[0].finish_reason };
    const chatSchema = await client.chat.completions.create({ model, messages: question, max_tokens: 64, seed: 3, json_schema: schema });
    out.chat_json_schema = { text: chatSchema.choices[0].message.content, finish: chatSchema.choices[0].finish_reason };
    return out;
  },
  // Against a server whose template opens <think>: the thinking budget closes the block, and the
  // schema holds the answer after it, not the reasoning.
  async reasoning_schema() {
    const out = [];
    for (const seed of [1, 2]) {
      const r = await client.chat.completions.create({ model, messages: question, max_tokens: 80, seed, thinking_budget: 8, response_format: jsonSchema });
      const m = r.choices[0].message;
      out.push({ reasoning: m.reasoning_content ?? null, content: m.content, finish: r.choices[0].finish_reason });
    }
    return { answers: out };
  },
  // args: a token id and its text; +100 makes greedy write it every time, -100 bans it.
  async logit_bias() {
    const [id] = args;
    const ask = (bias, extra = {}) =>
      client.chat.completions.create({ model, messages: question, max_tokens: 4, temperature: 0, ignore_eos: true, logit_bias: { [id]: bias }, ...extra });
    const forced = await ask(100, { logprobs: true });
    const c = await client.completions.create({ model, prompt: 'Once upon a time', max_tokens: 4, temperature: 0, ignore_eos: true, logit_bias: { [id]: 100 } });
    return {
      chat: forced.choices[0].message.content,
      chat_tokens: forced.choices[0].logprobs.content.map((t) => t.token),
      completion: c.choices[0].text,
      bad: await refused(() => ask(101)),
      bad_id: await refused(() => client.chat.completions.create({ model, messages: question, max_tokens: 2, logit_bias: { 99999: 5 } })),
    };
  },
  async bad_input() {
    const chat = (extra) => () => client.chat.completions.create({ model, messages: question, max_tokens: 4, ...extra });
    return {
      not_json: await refused(chat({ response_format: { type: 'json_schema', json_schema: { name: 'x', schema: '{' } } })),
      unsatisfiable: await refused(chat({ response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'integer', minimum: 5, maximum: 1 } } } })),
      regex: await refused(chat({ json_schema: { type: 'string', pattern: '^(?<=a)b' } })),
      gbnf: await refused(() => client.completions.create({ model, prompt: 'x', max_tokens: 4, grammar: 'root ::= "a" |\nitem ::= [a-' })),
      keyword: await refused(chat({ response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { not: {} } } } })),
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
