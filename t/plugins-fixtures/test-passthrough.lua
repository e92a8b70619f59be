-- test-passthrough: a body_filter that leaves every chunk as it is, so the route takes the
-- gateway's body-filter path (chunked to the client, Lua sees each chunk). Counts chunks in
-- the X-Chunks trailer-less way: into ctx only, for the log phase.
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
