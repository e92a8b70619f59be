-- test-passthrough: a body_filter that leaves every chunk as it is, so the route takes the
-- gateway's body-filter path (chunked to the client, Lua sees each chunk). It only counts
-- chunks and bytes in ctx["test-passthrough"]. Used by t/http/sse.t, backpressure.t and
-- client-abort.t.
local _M = { name = "test-passthrough", version = 1, priority = 900, schema = { type = "object" } }


function _M.body_filter(conf, ctx)
    local st = ctx[_M.name] or { chunks = 0, bytes = 0 }
    ctx[_M.name] = st
    if ctx.chunk then
        st.chunks = st.chunks + 1
        st.bytes = st.bytes + #ctx.chunk
    end
end


return _M
