-- GET a random loaded server's range of history each request: the last SPAN seconds by STEP.
-- Usage: wrk ... -s bench/wrk/get_range.lua http://127.0.0.1:PORT -- SERVERS SPAN STEP
-- e.g. -- 100000 604800 hour   (7 days by hour)   or   -- 100000 86400 minute   (24 h by minute).
-- Each request asks /servers/srv-%06d.bench/loads?from=NOW-SPAN&to=NOW&step=STEP, with NOW the
-- epoch second when the request is formatted and a uniform random index in [0, SERVERS).
local servers = 100000
local span = 604800
local step = "hour"

function init(args)
  servers = tonumber(args[1] or "100000")
  span = tonumber(args[2] or "604800")
  step = args[3] or step
  math.randomseed(os.time() + math.floor(os.clock() * 1000000))
end

function request()
  local now = os.time()
  local name = string.format("srv-%06d.bench", math.random(0, servers - 1))
  return wrk.format("GET", string.format("/servers/%s/loads?from=%d&to=%d&step=%s", name, now - span, now, step))
end
