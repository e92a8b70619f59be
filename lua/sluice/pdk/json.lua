-- pdk.json: lua-cjson, configured once (no sparse-array errors, empty tables as objects).
local cjson = require("cjson.safe")

cjson.encode_sparse_array(true)
if cjson.encode_escape_forward_slash then
    cjson.encode_escape_forward_slash(false)
end

local _M = {
    encode = cjson.encode,
    decode = cjson.decode,
    null = cjson.null,
    empty_array = cjson.empty_array,
    array_mt = cjson.array_mt,
}


-- In a worker, decode tries the host's fast decoder first (core/json_decode.c: the same values
-- for what it takes, ~5x faster on request bodies); lua-cjson decodes, and words the error
-- for, what it declines. Outside a worker (unit tests) it is lua-cjson alone.
do
    local ok, core = pcall(require, "sluice.core")
    local fast = ok and type(core) == "table" and core.json_decode
    if fast then
        local cjson_decode = cjson.decode
        _M.decode = function(s)
            if type(s) == "string" then
                local done, v = fast(s)
                if done then
                    return v
                end
            end

            return cjson_decode(s)
        end
    end
end


-- encode with a fallback message instead of nil, for logs
function _M.delay_encode(v)
    return cjson.encode(v) or "<unencodable>"
end


return _M
