-- sluice.balancer: picks a node of an upstream in APISIX's shape
-- {type = "roundrobin", nodes = {["host:port"] = weight} or {{host, port, weight}}, ...}.
-- Smooth weighted round robin (as nginx does), state kept per upstream table per worker.
local pairs = pairs
local ipairs = ipairs
local tonumber = tonumber
local type = type

local _M = {}

local state = setmetatable({}, { __mode = "k" })


local function parse_nodes(nodes, scheme)
    local list = {}
    if type(nodes) ~= "table" then
        return list
    end

    local default_port = scheme == "https" and 443 or 80
    if #nodes > 0 then
        for _, n in ipairs(nodes) do
            if type(n) == "table" and n.host then
                list[#list + 1] = { host = n.host, port = tonumber(n.port) or default_port,
                                    weight = tonumber(n.weight) or 1 }
            end
        end
    else
        for addr, weight in pairs(nodes) do
            local host, port = addr:match("^%[(.+)%]:(%d+)$")
            if not host then
                host, port = addr:match("^(.+):(%d+)$")
            end

            if not host then
                host = addr
            end

            list[#list + 1] = { host = host, port = tonumber(port) or default_port,
                                weight = tonumber(weight) or 1 }
        end

        table.sort(list, function(a, b)
            return a.host .. a.port < b.host .. b.port
        end)
    end

    local live = {}
    for _, n in ipairs(list) do
        if n.weight > 0 then
            n.current = 0
            n.addr = (n.host:find(":", 1, true) and "[" .. n.host .. "]" or n.host) .. ":" .. n.port
            live[#live + 1] = n
        end
    end

    return live
end


local function get_state(up)
    local st = state[up]
    if not st then
        st = { nodes = parse_nodes(up.nodes, up.scheme) }
        local total = 0
        for _, n in ipairs(st.nodes) do
            total = total + n.weight
        end

        st.total = total
        state[up] = st
    end

    return st
end


-- pick(up, tried) -> node | nil; tried: set of addrs to avoid (retries)
function _M.pick(up, tried)
    local st = get_state(up)
    local nodes = st.nodes
    local n = #nodes
    if n == 0 then
        return nil, "no valid upstream node"
    end

    if n == 1 then
        local node = nodes[1]
        if tried and tried[node.addr] then
            return nil, "all upstream nodes tried"
        end

        return node
    end

    local best
    local total = 0
    for i = 1, n do
        local node = nodes[i]
        if not (tried and tried[node.addr]) then
            node.current = node.current + node.weight
            total = total + node.weight
            if not best or node.current > best.current then
                best = node
            end
        end
    end

    if not best then
        return nil, "all upstream nodes tried"
    end

    best.current = best.current - total
    return best
end


function _M.node_count(up)
    return #get_state(up).nodes
end


return _M
