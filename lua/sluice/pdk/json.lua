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


-- encode with a fallback message instead of nil, for logs
function _M.delay_encode(v)
    return cjson.encode(v) or "<unencodable>"
end


return _M
