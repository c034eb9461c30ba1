-- POST /loads with a body of 1,000 samples for 1,000 distinct servers (no ts).
-- Usage: wrk ... -s bench/wrk/post_batch.lua http://127.0.0.1:PORT -- SERVERS PER_BODY
-- Bodies cover servers srv-000000.bench .. srv-(SERVERS-1).bench, 1,000 per body,
-- and rotate request by request; all requests are formatted once, in init.
local requests = {}
local next_index = 1

function init(args)
  local servers = tonumber(args[1] or "100000")
  local per_body = tonumber(args[2] or "1000")
  math.randomseed(os.time() + math.floor(os.clock() * 1000000))
  local headers = { ["Content-Type"] = "application/json" }
  for first = 0, servers - 1, per_body do
    local items = {}
    for i = first, math.min(first + per_body, servers) - 1 do
      items[#items + 1] = string.format('{"server":"srv-%06d.bench","cpu":%.2f,"ram":%.2f}',
                                        i, math.random() * 100, math.random() * 100)
    end
    requests[#requests + 1] = wrk.format("POST", "/loads", headers, "[" .. table.concat(items, ",") .. "]")
  end
  next_index = math.random(1, #requests)
end

function request()
  local r = requests[next_index]
  next_index = next_index % #requests + 1
  return r
end
