-- GET a random loaded server's window each request.
-- Usage: wrk ... -s bench/wrk/get_random.lua http://127.0.0.1:PORT -- SERVERS [PATH]
-- PATH holds one %s for the name (default /servers/%s/loads); the name is
-- srv-%06d.bench with a uniform random index in [0, SERVERS).
local servers = 100000
local path = "/servers/%s/loads"

function init(args)
  servers = tonumber(args[1] or "100000")
  path = args[2] or path
  math.randomseed(os.time() + math.floor(os.clock() * 1000000))
end

function request()
  return wrk.format("GET", string.format(path, string.format("srv-%06d.bench", math.random(0, servers - 1))))
end
