// Drives `owl serve` with the official `openai` npm client for logprobs and n > 1 choices (issue
// #20): one scenario per run, what it observed printed as one JSON line for the GoogleTest that
// started it to check (tests/server/openai_logprobs_test.cpp).
// usage: node openai_logprobs.mjs NPM_PREFIX PORT SCENARIO
import { createRequire } from 'node:module';

const [npmPrefix, port, scenario] = process.argv.slice(2);
const { OpenAI } = createRequire(npmPrefix + '/')('openai');
const client = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: 'sk-owl-test', maxRetries: 0, timeout: 60000 });

const model = 'stories260K-f32';
const story = [{ role: 'user', content: 'Once upon a time' }];

// A refused request as the client reports it.
async function refusal(request) {
  try {
    await request();
    return { status: 200 };
  } catch (e) {
    return { status: e.status ?? null, param: e.param ?? null, message: e.message };
  }
}

const scenarios = {
  async chat_logprobs() {
    const ask = { model, messages: story, max_tokens: 8, ignore_eos: true, temperature: 0, logprobs: true, top_logprobs: 3 };
    const whole = await client.chat.completions.create(ask);
    const stream = await client.chat.completions.create({ ...ask, stream: true });
    const streamed = [];
    let indexes = 0;
    for await (const chunk of stream) {
      for (const c of chunk.choices) {
        indexes += c.index === 0 ? 0 : 1;
        for (const e of c.logprobs?.content ?? []) streamed.push(e);
      }
    }
    return {
      content: whole.choices[0].message.content,
      logprobs: whole.choices[0].logprobs,
      completion_tokens: whole.usage.completion_tokens,
      streamed,
      other_indexes: indexes,
    };
  },
  async completion_logprobs() {
    const r = await client.completions.create({ model, prompt: 'Once upon a time', max_tokens: 5, ignore_eos: true, temperature: 0, logprobs: 2 });
    return { text: r.choices[0].text, logprobs: r.choices[0].logprobs };
  },
  async choices() {
    const three = await client.chat.completions.create({ model, messages: story, max_tokens: 10, ignore_eos: true, temperature: 0, n: 3 });
    const one = await client.chat.completions.create({ model, messages: story, max_tokens: 10, ignore_eos: true, temperature: 0 });
    const stream = await client.chat.completions.create({
      model, messages: story, max_tokens: 10, ignore_eos: true, temperature: 1, seed: 11, n: 2, stream: true, stream_options: { include_usage: true },
    });
    const streamed = ['', ''];
    let usage = null;
    for await (const chunk of stream) {
      if (chunk.usage) usage = chunk.usage;
      for (const c of chunk.choices) streamed[c.index] += c.delta?.content ?? '';
    }
    const seeded = [];
    for (const seed of [11, 12])
      seeded.push((await client.chat.completions.create({ model, messages: story, max_tokens: 10, ignore_eos: true, temperature: 1, seed })).choices[0].message.content);
    return {
      three: three.choices.map((c) => ({ index: c.index, content: c.message.content })),
      one: one.choices[0].message.content,
      usage: three.usage,
      streamed,
      seeded,
      stream_usage: usage,
    };
  },
  async bad_input() {
    const chat = (extra) => () => client.chat.completions.create({ model, messages: story, max_tokens: 2, ...extra });
    return {
      top_without_logprobs: await refusal(chat({ top_logprobs: 2 })),
      top_too_many: await refusal(chat({ logprobs: true, top_logprobs: 21 })),
      n_zero: await refusal(chat({ n: 0 })),
      n_too_many: await refusal(chat({ n: 17 })),
      completion_logprobs_too_many: await refusal(() => client.completions.create({ model, prompt: 'Hi', max_tokens: 2, logprobs: 6 })),
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
