-- GET /servers/NAME/loads for a random loaded server each request.
-- Usage: wrk ... -s bench/wrk/get_random.lua http://127.0.0.1:PORT -- SERVERS
-- NAME is srv-%06d.bench with a uniform random index in [0, SERVERS).
local servers = 100000

function init(args)
  servers = tonumber(args[1] or "100000")
  math.randomseed(os.time() + math.floor(os.clock() * 1000000))
end

function request()
  return wrk.format("GET", string.format("/servers/srv-%06d.bench/loads", math.random(0, servers - 1)))
end
