// openai-client.mjs -- the official openai npm package against Sluice (ai-proxy) and the mock
// LLM: chat, a streamed chat iterated chunk by chunk, embeddings, the Responses API, a provider
// 401 surfacing as the SDK's AuthenticationError (and 429 as RateLimitError), and a stream the
// client aborts. Prints TAP; t/clients/openai.t starts the servers and runs it with
//   SLUICE_BASE_URL  http://127.0.0.1:PORT/v1   (the gateway, routes /v1/* -> ai-proxy)
import OpenAI from "openai";

const base = process.env.SLUICE_BASE_URL;
if (!base) {
    console.log("1..0 # SKIP SLUICE_BASE_URL not set");
    process.exit(0);
}

let n = 0;
let failed = 0;

function ok(cond, name, detail) {
    n++;
    if (!cond) {
        failed++;
    }
    console.log(`${cond ? "ok" : "not ok"} ${n} - ${name}`);
    if (!cond && detail !== undefined) {
        console.log(`# ${JSON.stringify(detail)}`.replace(/\n/g, "\n# "));
    }
}

function is(got, want, name) {
    ok(got === want, name, { got, want });
}

// the client's own key: the gateway must not forward it (openai.t checks the mock's record)
const client = new OpenAI({ apiKey: "sk-client-sdk-key", baseURL: base, maxRetries: 0,
                            timeout: 10000 });
const messages = [{ role: "user", content: "say hello to the SDK" }];

async function step(name, fn) {
    try {
        await fn();
    } catch (err) {
        ok(false, `${name}: threw ${err && err.constructor && err.constructor.name}`,
           String(err && err.stack || err));
    }
}

await step("chat", async () => {
    const { data, response } = await client.chat.completions
        .create({ model: "sdk-model", messages })
        .withResponse();
    is(data.object, "chat.completion", "chat: a chat.completion");
    is(data.choices[0].message.content, "Hello from mock", "chat: the answer");
    is(data.choices[0].finish_reason, "stop", "chat: finish_reason");
    is(data.usage.prompt_tokens, 5, "chat: usage.prompt_tokens");
    is(data.usage.completion_tokens, 3, "chat: usage.completion_tokens");
    is(data.usage.total_tokens, 8, "chat: usage.total_tokens");
    ok(/^mock-\d+$/.test(response.headers.get("x-request-id") || ""),
       "chat: provider x-request-id reaches the SDK", response.headers.get("x-request-id"));
    ok(response.headers.get("x-ratelimit-limit-requests") === "100",
       "chat: x-ratelimit-* reaches the SDK");
});

await step("stream", async () => {
    const stream = await client.chat.completions.create(
        { model: "sdk-model", messages, stream: true, stream_options: { include_usage: true } },
        { headers: { "x-mock-events": "12", "x-mock-chunk-delay-ms": "40" } });
    const times = [];
    let text = "";
    let chunks = 0;
    let usage = null;
    for await (const chunk of stream) {
        chunks++;
        times.push(Date.now());
        is(chunk.object, "chat.completion.chunk", `stream: chunk ${chunks} is a chunk`);
        if (chunk.choices.length > 0) {
            text += chunk.choices[0].delta.content || "";
        }
        if (chunk.usage) {
            usage = chunk.usage;
        }
    }
    is(chunks, 14, "stream: 12 words + finish + usage chunks");
    is(text, Array.from({ length: 12 }, (_, i) => `w${i + 1}`).join(" "), "stream: the text");
    ok(usage && usage.completion_tokens === 12, "stream: usage chunk", usage);
    const spread = times[times.length - 1] - times[0];
    ok(spread >= 300, `stream: chunks arrived over time (${spread} ms), not at the end`);
});

await step("embeddings", async () => {
    // the SDK asks for base64 unless told; the mock only speaks floats
    const res = await client.embeddings.create({ model: "emb-model", encoding_format: "float",
                                                 input: ["hello world", "three word input"] });
    is(res.object, "list", "embeddings: a list");
    is(res.data.length, 2, "embeddings: two vectors");
    is(res.data[0].embedding.length, 8, "embeddings: 8 dimensions");
    is(res.usage.prompt_tokens, 5, "embeddings: usage.prompt_tokens");
});

await step("responses", async () => {
    const res = await client.responses.create({ model: "sdk-model", input: "hello there" });
    is(res.output_text, "Hello from mock", "responses: output_text");
    is(res.usage.input_tokens, 2, "responses: usage.input_tokens");
});

await step("401", async () => {
    let caught = null;
    try {
        await client.chat.completions.create({ model: "sdk-model", messages },
                                             { headers: { "x-mock-status": "401" } });
    } catch (err) {
        caught = err;
    }
    ok(caught instanceof OpenAI.AuthenticationError, "401: OpenAI.AuthenticationError",
       caught && caught.constructor.name);
    is(caught && caught.status, 401, "401: status");
    ok(caught && /mock error/.test(caught.message), "401: the provider's message",
       caught && caught.message);
    ok(caught && /^mock-\d+$/.test(caught.requestID || ""), "401: requestID from x-request-id",
       caught && caught.requestID);
});

await step("429", async () => {
    let caught = null;
    try {
        await client.chat.completions.create({ model: "sdk-model", messages },
                                             { headers: { "x-mock-status": "429" } });
    } catch (err) {
        caught = err;
    }
    ok(caught instanceof OpenAI.RateLimitError, "429: OpenAI.RateLimitError",
       caught && caught.constructor.name);
    is(caught && caught.headers && caught.headers.get("retry-after"), "1",
       "429: retry-after visible to the SDK");
});

await step("abort", async () => {
    const stream = await client.chat.completions.create(
        { model: "abort-model", messages, stream: true },
        { headers: { "x-mock-events": "200", "x-mock-chunk-delay-ms": "30" } });
    let chunks = 0;
    for await (const chunk of stream) {
        chunks++;
        if (chunks === 3) {
            stream.controller.abort();
            break;
        }
    }
    is(chunks, 3, "abort: stopped after 3 chunks");
});

console.log(`1..${n}`);
process.exit(failed ? 1 : 0);
