-- sse.lua: incremental SSE parsing (every split position, CRLF, multi-line data, comments),
-- the usage scanner, flush at EOF, the tail cap and encoding.
local t = require("t.unit.tap")
local sse = require("sluice.ai.sse")

local ok, is, is_deeply = t.ok, t.is, t.is_deeply


-- events as plain tables comparable with is_deeply
local function norm(events)
    local out = {}
    for i, ev in ipairs(events) do
        out[i] = { ev.event, ev.data, ev.id }
    end

    return out
end


local function feed_pieces(pieces)
    local st = sse.new()
    local all = {}
    for _, p in ipairs(pieces) do
        for _, ev in ipairs(sse.feed(st, p)) do
            all[#all + 1] = ev
        end
    end

    return all, st
end


local function split_at(s, ...)
    local cuts = { ... }
    local pieces, prev = {}, 1
    for _, c in ipairs(cuts) do
        pieces[#pieces + 1] = s:sub(prev, c - 1)
        prev = c
    end

    pieces[#pieces + 1] = s:sub(prev)
    return pieces
end


-- basic parsing
do
    local evs = feed_pieces({ "data: hello\n\n" })
    is_deeply(norm(evs), { { "message", "hello" } }, "single data event, default type message")

    evs = feed_pieces({ "event: message_start\ndata: {\"a\":1}\nid: 7\n\n" })
    is_deeply(norm(evs), { { "message_start", '{"a":1}', "7" } }, "event name and id")

    evs = feed_pieces({ "data: line1\ndata: line2\ndata:line3\n\n" })
    is_deeply(norm(evs), { { "message", "line1\nline2\nline3" } },
              "multi-line data joined with LF, space after colon optional")

    evs = feed_pieces({ ": keep-alive\n\n: OPENROUTER PROCESSING\n\ndata: x\n\n" })
    is_deeply(norm(evs), { { "message", "x" } }, "comment-only blocks yield no event")

    evs = feed_pieces({ ": comment\ndata: y\n: another\n\n" })
    is_deeply(norm(evs), { { "message", "y" } }, "comments inside an event are ignored")

    evs = feed_pieces({ "data\n\n" })
    is_deeply(norm(evs), { { "message", "" } }, "field without colon: empty value")

    evs = feed_pieces({ "data:  two spaces\n\n" })
    is_deeply(norm(evs), { { "message", " two spaces" } }, "only one leading space is stripped")

    evs = feed_pieces({ "retry: 10\nfoo: bar\n\n" })
    is_deeply(norm(evs), { { "message", "" } }, "unknown fields count as fields")

    evs = feed_pieces({ "data: a\r\n\r\ndata: b\r\nevent: e\r\n\r\n" })
    is_deeply(norm(evs), { { "message", "a" }, { "e", "b" } }, "CRLF line endings")

    evs = feed_pieces({ "data: a\r\n\ndata: b\n\r\n" })
    is_deeply(norm(evs), { { "message", "a" }, { "message", "b" } }, "mixed CRLF/LF blank lines")

    evs = feed_pieces({ "data: a\n\n\n\ndata: b\n\n" })
    is_deeply(norm(evs), { { "message", "a" }, { "message", "b" } }, "extra blank lines")

    evs = feed_pieces({ "data: [DONE]\n\n" })
    is_deeply(norm(evs), { { "message", "[DONE]" } }, "[DONE]")

    evs = feed_pieces({ "event:\ndata: z\n\n" })
    is_deeply(norm(evs), { { "message", "z" } }, "empty event name means message")

    local st = sse.new()
    is(#sse.feed(st, "data: partial"), 0, "no event before the blank line")
    is(st.tail, "data: partial", "partial tail kept")
    is(#sse.feed(st, "\n"), 0, "still incomplete after one LF")
    local e = sse.feed(st, "\n")
    is_deeply(norm(e), { { "message", "partial" } }, "completed by the next chunk")
    is(st.tail, "", "tail empty after a complete event")

    st = sse.new()
    is(#sse.feed(st, ""), 0, "empty chunk")
end


-- every split position, LF and CRLF
local STREAM_LF = table.concat({
    ": ping\n\n",
    "event: message_start\n",
    'data: {"type":"message_start","message":{"usage":{"input_tokens":10}}}\n\n',
    "data: first line\ndata: second line\n\n",
    "id: 42\ndata: {\"usage\":null,\"choices\":[{\"delta\":{\"content\":\"a\\n\\nb\"}}]}\n\n",
    "event: message_delta\n",
    'data: {"type":"message_delta","usage":{"output_tokens":8}}\n\n',
    "data: [DONE]\n\n",
})
local STREAM_CRLF = STREAM_LF:gsub("\n", "\r\n")

for name, stream in pairs({ LF = STREAM_LF, CRLF = STREAM_CRLF }) do
    local want = norm(feed_pieces({ stream }))
    is(#want, 5, name .. ": reference parse has 5 events")
    local bad
    for i = 2, #stream do
        local got = norm(feed_pieces(split_at(stream, i)))
        if not t.dump or t.dump(got) ~= t.dump(want) then
            bad = bad or i
        end
    end

    ok(bad == nil, name .. ": same events when split at every byte position"
                   .. (bad and (" (first bad " .. bad .. ")") or ""))

    bad = nil
    for i = 2, #stream, 7 do
        for j = i + 1, #stream, 5 do
            local got = norm(feed_pieces(split_at(stream, i, j)))
            if t.dump(got) ~= t.dump(want) then
                bad = bad or (i .. "," .. j)
            end
        end
    end

    ok(bad == nil, name .. ": same events when split in three pieces"
                   .. (bad and (" " .. bad) or ""))

    local pieces = {}
    for i = 1, #stream do
        pieces[i] = stream:sub(i, i)
    end

    is_deeply(norm(feed_pieces(pieces)), want, name .. ": byte by byte")
end


-- complete(): fast path and region boundaries
do
    local st = sse.new()
    local r = sse.complete(st, "data: a\n\ndata: b\n\n")
    is(r, "data: a\n\ndata: b\n\n", "whole chunk is the region when it ends on a blank line")
    is(st.tail, "", "no tail")
    r = sse.complete(st, "data: c\n\ndata: d")
    is(r, "data: c\n\n", "region stops at the last blank line")
    is(st.tail, "data: d", "rest is the tail")
    r = sse.complete(st, "\r\n\r\n")
    is(r, "data: d\r\n\r\n", "tail joined with the next chunk")
end


-- flush at EOF
do
    local st = sse.new()
    sse.feed(st, "data: a\n\ndata: {\"usage\":{}}")
    local evs = sse.flush(st)
    is_deeply(norm(evs), { { "message", '{"usage":{}}' } },
              "flush parses an unterminated last event")
    is(st.tail, "", "flush empties the tail")
    is(#sse.flush(st), 0, "second flush is empty")

    st = sse.new()
    sse.feed(st, "data: x\n")
    is_deeply(norm(sse.flush(st)), { { "message", "x" } }, "flush with a trailing LF")
end


-- tail cap
do
    local st = sse.new()
    local big = "data: " .. string.rep("x", sse.MAX_TAIL + 10)
    local evs = sse.feed(st, big)
    is(#evs, 0, "no event from a runaway line")
    is(st.tail, "", "runaway tail dropped")
    ok((st.dropped or 0) > sse.MAX_TAIL, "dropped bytes counted")
    evs = sse.feed(st, "\n\ndata: ok\n\n")
    is_deeply(norm(evs)[#evs], { "message", "ok" }, "parser recovers after the drop")
end


-- scan: only usage-object events come back
do
    local st = sse.new()
    local chunk = table.concat({
        'data: {"choices":[{"delta":{"content":"hi"}}],"usage":null}\n\n',
        'data: {"choices":[{"delta":{"content":"\\"usage\\":{"}}],"usage":null}\n\n',
        'data: {"choices":[],"usage":{"prompt_tokens":3}}\n\n',
        "data: [DONE]\n\n",
    })
    local region, hits = sse.scan(st, chunk, '"usage"')
    is(region, chunk, "scan returns the complete region")
    is(hits and #hits, 1, "one usage-carrying event (null usage and escaped text skipped)")
    is(hits and hits[1].data, '{"choices":[],"usage":{"prompt_tokens":3}}', "its data")

    region, hits = sse.scan(sse.new(), 'data: {"a":1}\n\n', '"usage"')
    is(hits, nil, "no hits when no usage")

    region, hits = sse.scan(sse.new(), 'data: {"usage" :  {"x":1}}\n\n', '"usage"')
    is(hits and #hits, 1, "whitespace around the colon")

    local ant = table.concat({
        "event: message_start\n",
        'data: {"type":"message_start","message":{"usage":{"input_tokens":10}}}\n\n',
        "event: content_block_delta\n",
        'data: {"type":"content_block_delta","delta":{"type":"text_delta","text":"x"}}\n\n',
        "event: message_delta\n",
        'data: {"type":"message_delta","usage":{"output_tokens":8}}\n\n',
    })
    region, hits = sse.scan(sse.new(), ant, '"usage"')
    is(hits and #hits, 2, "anthropic: message_start and message_delta")
    is(hits and hits[1].event, "message_start", "first hit's event name")
    is(hits and hits[2].event, "message_delta", "second hit's event name")

    -- every split position: the same hits in total
    local want = { "message_start", "message_delta" }
    local bad
    for i = 2, #ant do
        local s2 = sse.new()
        local names = {}
        for _, piece in ipairs(split_at(ant, i)) do
            local _, h = sse.scan(s2, piece, '"usage"')
            for _, ev in ipairs(h or {}) do
                names[#names + 1] = ev.event
            end
        end

        if t.dump(names) ~= t.dump(want) then
            bad = bad or i
        end
    end

    ok(bad == nil, "scan finds both usage events at every split position"
                   .. (bad and (" (bad " .. bad .. ")") or ""))

    local crlf = ant:gsub("\n", "\r\n")
    bad = nil
    for i = 2, #crlf do
        local s2 = sse.new()
        local n = 0
        for _, piece in ipairs(split_at(crlf, i)) do
            local _, h = sse.scan(s2, piece, '"usage"')
            n = n + (h and #h or 0)
        end

        if n ~= 2 then
            bad = bad or i
        end
    end

    ok(bad == nil, "scan with CRLF at every split position")
end


-- find_key_object and value_start
do
    local s = '{"usage":null,"x":{"usage":{"a":1}}}'
    local p, brace = sse.find_key_object(s, '"usage"', 1)
    is(p, 20, "second usage key found (first has a null value)")
    is(s:sub(brace, brace), "{", "brace position")
    is(sse.find_key_object('{"usage"}', '"usage"', 1), nil, "no colon: not a key")
    local v, c = sse.value_start('"content": "x"', 1, 9)
    is(v, 12, "value start after colon and space")
    is(c, 34, "value byte is a quote")
    is(sse.value_start('"content","x"', 1, 9), nil, "a string value, not a key")
end


-- encode
do
    is(sse.encode(nil, '{"a":1}'), 'data: {"a":1}\n\n', "data only")
    is(sse.encode("message", "x"), "data: x\n\n", "message type writes no event line")
    is(sse.encode("ping", '{"type":"ping"}'), 'event: ping\ndata: {"type":"ping"}\n\n', "named")
    is(sse.encode(nil, "a\nb"), "data: a\ndata: b\n\n", "multi-line data")
    local evs = feed_pieces({ sse.encode("e", "l1\nl2\n") })
    is_deeply(norm(evs), { { "e", "l1\nl2\n" } }, "encode/parse round trip with newlines")
end


t.done_testing()
