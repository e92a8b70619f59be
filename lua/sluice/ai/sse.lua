-- sse.lua -- incremental Server-Sent Events parsing for LLM streams.
--
-- Upstream chunks cut events anywhere, so a parser state keeps the bytes after the last
-- complete event (the tail) and joins them to the next chunk. An event ends at a blank line;
-- lines end in LF or CRLF (a lone CR is not a line end here: no LLM provider sends it, and
-- honouring it would force a one-byte look-ahead on every chunk).
--
-- Two ways in:
--   feed(st, chunk)      -> every complete event, parsed ({event, data, id}); for converters,
--                           which need each event anyway.
--   scan(st, chunk, key) -> the complete region plus only the events whose data holds `key`
--                           with an object value (`"usage": {`). Events are never split or
--                           parsed on this path; the cost per chunk is a few plain finds, so
--                           a relayed stream is not slowed by JSON decoding (APISIX decodes
--                           every event and loses most of its streaming throughput to it).
-- The tail is capped (MAX_TAIL); a runaway event without a blank line is dropped, not buffered
-- without end.
local find = string.find
local sub = string.sub
local byte = string.byte
local concat = table.concat

local LF, CR, SP, TAB, COLON, LBRACE, QUOTE = 10, 13, 32, 9, 58, 123, 34

-- In a worker the host scans for hits in C (core/sse_scan.c, the same rules): memmem over the
-- region instead of a string.find per key occurrence ("usage":null is in every OpenAI event)
-- and a walk over every event boundary before the hit. Plain LuaJIT (unit tests, the config
-- check) uses the Lua below.
local c_hits
do
    local ok, core = pcall(require, "sluice.core")
    if ok and type(core) == "table" then
        c_hits = core.sse_hits
    end
end
local MAX_TAIL = 1024 * 1024

local _M = { MAX_TAIL = MAX_TAIL }


-- The next event end at or after init: returns the position of the LF that ends the event's
-- last line and the first position after the blank line, or nil when no complete blank line
-- follows yet.
local function next_boundary(s, init)
    local p = init
    while true do
        local nl = find(s, "\n", p, true)
        if not nl then
            return nil
        end

        local c = byte(s, nl + 1)
        if c == LF then
            return nl, nl + 2
        end

        if c == CR then
            local c2 = byte(s, nl + 2)
            if c2 == LF then
                return nl, nl + 3
            end

            if c2 == nil then
                return nil          -- "\n\r" at the end: wait for the next byte
            end
        end

        if c == nil then
            return nil
        end

        p = nl + 1
    end
end
_M.next_boundary = next_boundary


-- Parse the event in s[i..j] (j is the LF ending its last line, or the end of s).
-- Returns {event = name or "message", data = lines joined by "\n", id = string or nil},
-- or nil when the block holds no field (only comments or blank lines).
local function parse_event(s, i, j)
    local event, id, data, extra
    local has_field = false
    local pos = i
    while pos <= j do
        local nl = find(s, "\n", pos, true)
        local line_end
        if not nl or nl > j then
            line_end = j
            nl = j + 1
            if byte(s, j) == LF then
                line_end = j - 1
            end

        else
            line_end = nl - 1
        end

        if line_end >= pos and byte(s, line_end) == CR then
            line_end = line_end - 1
        end

        if line_end >= pos and byte(s, pos) ~= COLON then
            local colon = find(s, ":", pos, true)
            local name, value
            if colon and colon <= line_end then
                name = sub(s, pos, colon - 1)
                local vstart = colon + 1
                if byte(s, vstart) == SP then
                    vstart = vstart + 1
                end
                value = sub(s, vstart, line_end)

            else
                name = sub(s, pos, line_end)
                value = ""
            end

            has_field = true
            if name == "data" then
                if data == nil then
                    data = value

                elseif extra then
                    extra[#extra + 1] = value

                else
                    extra = { data, value }
                end

            elseif name == "event" then
                event = value

            elseif name == "id" then
                id = value
            end
        end

        pos = nl + 1
    end

    if not has_field then
        return nil
    end

    if extra then
        data = concat(extra, "\n")
    end

    return { event = (event ~= nil and event ~= "") and event or "message", data = data or "",
             id = id }
end
_M.parse_event = parse_event


-- Join the tail and the chunk and split off what is complete. Returns the complete region
-- (a string of whole events, possibly "") and keeps the rest as the new tail.
local function complete(st, chunk)
    local tail = st.tail
    local buf, from
    if tail == "" then
        buf, from = chunk, 1

    else
        buf = tail .. chunk
        from = #tail - 1            -- a blank line may straddle the old tail and the chunk
        if from < 1 then
            from = 1
        end
    end

    local n = #buf
    if n == 0 then
        return ""
    end

    -- Fast path: providers write whole events, so the buffer usually ends on a blank line.
    if byte(buf, n) == LF then
        local c = byte(buf, n - 1)
        if c == LF or (c == CR and byte(buf, n - 2) == LF) then
            st.tail = ""
            return buf
        end
    end

    local last
    local _, nxt = next_boundary(buf, from)
    while nxt do
        last = nxt
        _, nxt = next_boundary(buf, nxt)
    end

    if not last then
        if n > MAX_TAIL then
            st.tail = ""
            st.dropped = (st.dropped or 0) + n
            return ""
        end

        st.tail = buf
        return ""
    end

    local rest = sub(buf, last)
    if #rest > MAX_TAIL then
        st.dropped = (st.dropped or 0) + #rest
        rest = ""
    end

    st.tail = rest
    return sub(buf, 1, last - 1)
end
_M.complete = complete


-- Parse every event of a complete region, appending to `out` (a new array when nil).
local function parse_region(region, out)
    out = out or {}
    local pos = 1
    local n = #region
    while pos <= n do
        local lf, nxt = next_boundary(region, pos)
        if not lf then
            lf, nxt = n, n + 1
        end

        local ev = parse_event(region, pos, lf)
        if ev then
            out[#out + 1] = ev
        end

        pos = nxt
    end

    return out
end
_M.parse_region = parse_region


function _M.new()
    return { tail = "" }
end


-- feed(st, chunk) -> array of complete events (possibly empty).
function _M.feed(st, chunk)
    local region = complete(st, chunk)
    if region == "" then
        return {}
    end

    return parse_region(region)
end


-- flush(st) -> the events left in the tail at end of stream. The SSE spec drops an event
-- that lacks its blank line at EOF; providers' last event sometimes does, and its usage
-- still counts, so it is parsed here and the caller decides.
function _M.flush(st)
    local tail = st.tail
    st.tail = ""
    if tail == "" then
        return {}
    end

    return parse_region(tail)
end


-- Needles without their leading quote, by needle (see find_quoted).
local tails = {}


-- Keep looking after a match of tail at q that had no quote before it.
local function find_quoted_next(s, tail, q)
    repeat
        q = find(s, tail, q + 1, true)
    until not q or byte(s, q - 1) == QUOTE

    return q and q - 1
end


-- find_quoted(s, needle, init) -> position of the next `needle` (which starts with '"') at or
-- after init, or nil. string.find locates a needle by memchr on its first byte; in JSON '"' is
-- every few bytes, so searching from the second byte and checking the quote after is several
-- times faster. The common path has no loop, so the JIT keeps it inside the caller's trace.
local function find_quoted(s, needle, init)
    local tail = tails[needle]
    if not tail then
        tail = sub(needle, 2)
        tails[needle] = tail
    end

    local q = find(s, tail, init + 1, true)
    if not q then
        return nil
    end

    if byte(s, q - 1) == QUOTE then
        return q - 1
    end

    return find_quoted_next(s, tail, q)
end
_M.find_quoted = find_quoted


-- Position of the next `key` (a quoted JSON key such as '"usage"') at or after init whose
-- value is an object: returns the key's position and the position of its "{", or nil.
local function find_key_object(s, key, init)
    local klen = #key
    local p = find_quoted(s, key, init)
    while p do
        local q = p + klen
        local c = byte(s, q)
        while c == SP or c == TAB do
            q = q + 1
            c = byte(s, q)
        end

        if c == COLON then
            q = q + 1
            c = byte(s, q)
            while c == SP or c == TAB do
                q = q + 1
                c = byte(s, q)
            end

            if c == LBRACE then
                return p, q
            end
        end

        p = find_quoted(s, key, q)
    end

    return nil
end
_M.find_key_object = find_key_object


-- Position of the first byte of the value of the key found at p (a quoted key of length klen),
-- or nil when no ":" follows (the match was a string value, not a key).
function _M.value_start(s, p, klen)
    local q = p + klen
    local c = byte(s, q)
    while c == SP or c == TAB do
        q = q + 1
        c = byte(s, q)
    end

    if c ~= COLON then
        return nil
    end

    q = q + 1
    c = byte(s, q)
    while c == SP or c == TAB do
        q = q + 1
        c = byte(s, q)
    end

    return q, c
end


-- scan(st, chunk, key, compact) -> region, hits. `hits` is nil, or the parsed events of the
-- region whose data holds `key` with an object value. The caller decodes only those.
-- `compact` (optional) is key .. ":{", searched for directly when the stream's JSON has no
-- spaces: one plain find per chunk instead of one per key occurrence ("usage":null is in
-- every OpenAI chunk).
local function next_hit(region, key, compact, init)
    if compact then
        return find_quoted(region, compact, init)
    end

    return find_key_object(region, key, init)
end


function _M.scan(st, chunk, key, compact)
    local region = complete(st, chunk)
    if region == "" then
        return region, nil
    end

    if c_hits then
        return region, c_hits(region, key)
    end

    local pos = next_hit(region, key, compact, 1)
    if not pos then
        return region, nil
    end

    local hits = {}
    local n = #region
    local ev_start = 1
    while pos do
        local lf, nxt = next_boundary(region, ev_start)
        while lf and lf < pos do
            ev_start = nxt
            lf, nxt = next_boundary(region, ev_start)
        end

        if not lf then
            lf, nxt = n, n + 1
        end

        local ev = parse_event(region, ev_start, lf)
        if ev then
            hits[#hits + 1] = ev
        end

        ev_start = nxt
        pos = next_hit(region, key, compact, ev_start)
    end

    return region, hits
end


-- encode(event, data) -> one SSE event. `event` nil or "message" writes no event line.
-- data with newlines becomes several data lines, as the spec requires.
function _M.encode(event, data)
    local head = ""
    if event and event ~= "message" then
        head = "event: " .. event .. "\n"
    end

    if not find(data, "\n", 1, true) then
        return head .. "data: " .. data .. "\n\n"
    end

    local parts = {}
    local pos = 1
    while true do
        local nl = find(data, "\n", pos, true)
        if not nl then
            parts[#parts + 1] = "data: " .. sub(data, pos)
            break
        end

        parts[#parts + 1] = "data: " .. sub(data, pos, nl - 1)
        pos = nl + 1
    end

    return head .. concat(parts, "\n") .. "\n\n"
end


return _M
