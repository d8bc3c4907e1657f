-- One wrk script for every scenario. Written by bench/wrk.py, read once per thread in init():
--   BENCH_SPEC   a file of requests, one per line: weight TAB method TAB path TAB content-type TAB body
--                ("{id}" in a path becomes the next id of BENCH_IDS; "-" means no content-type/body)
--   BENCH_IDS    a file of item ids, one per line (each thread starts at its own place)
--   BENCH_TOKEN  the bearer token sent with every request (empty: none)
-- done() prints one line, "BENCH_RESULT {json}", that bench/wrk.py parses.

local requests, ids, picks = {}, {}, {}
local next_id, token = 1, os.getenv("BENCH_TOKEN") or ""
local counter = 0

local function lines(path)
  local found = {}
  if path and path ~= "" then
    for line in io.lines(path) do
      if line ~= "" then found[#found + 1] = line end
    end
  end
  return found
end

local function split(line)
  local fields = {}
  for field in (line .. "\t"):gmatch("(.-)\t") do fields[#fields + 1] = field end
  return fields
end

function setup(thread)
  counter = counter + 1
  thread:set("thread_number", counter)
end

function init(args)
  for _, line in ipairs(lines(os.getenv("BENCH_SPEC"))) do
    local f = split(line)
    local headers = {}
    if token ~= "" then headers["Authorization"] = "Bearer " .. token end
    if f[4] ~= "-" then headers["Content-Type"] = f[4] end
    local body = nil
    if f[5] ~= "-" then body = f[5] end
    requests[#requests + 1] = {method = f[2], path = f[3], headers = headers, body = body}
    if f[3]:find("{id}", 1, true) and #lines(os.getenv("BENCH_IDS")) == 0 then
      error("a path has {id} but BENCH_IDS names no ids")
    end
    for _ = 1, tonumber(f[1]) do picks[#picks + 1] = #requests end
  end
  ids = lines(os.getenv("BENCH_IDS"))
  local number = thread_number or 1
  if #ids > 0 then next_id = ((number - 1) * 7919) % #ids + 1 end
  math.randomseed(number * 104729)
end

function request()
  local r = requests[picks[math.random(#picks)]]
  local path = r.path
  if path:find("{id}", 1, true) then
    path = path:gsub("{id}", ids[next_id])
    next_id = next_id % #ids + 1
  end
  return wrk.format(r.method, path, r.headers, r.body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
