-- POST /servers/NAME/loads with one sample {"cpu": x, "ram": y} (no ts).
-- Usage: wrk ... -s bench/wrk/post_single.lua http://127.0.0.1:PORT -- SERVERS
-- Names rotate over srv-000000.bench .. srv-(SERVERS-1).bench; requests are
-- formatted once, in init (up to 10,000 distinct ones, reused in turn).
local requests = {}
local next_index = 1

function init(args)
  local servers = tonumber(args[1] or "100000")
  math.randomseed(os.time() + math.floor(os.clock() * 1000000))
  local headers = { ["Content-Type"] = "application/json" }
  local count = math.min(servers, 10000)
  local offset = math.random(0, servers - 1)
  for k = 0, count - 1 do
    local i = (offset + k * math.max(1, math.floor(servers / count))) % servers
    local body = string.format('{"cpu":%.2f,"ram":%.2f}', math.random() * 100, math.random() * 100)
    requests[#requests + 1] = wrk.format("POST", string.format("/servers/srv-%06d.bench/loads", i), headers, body)
  end
end

function request()
  local r = requests[next_index]
  next_index = next_index % #requests + 1
  return r
end
