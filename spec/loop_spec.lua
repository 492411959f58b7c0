-- The one retry loop (lua/tcp_port_used/loop.lua) on a fake clock: now()
-- and sleep(ms) are injected, so its schedule is checked exactly and in no
-- real time. (wait_spec.lua runs the same loop through the public API on
-- the real clock.)
local loop = require "tcp_port_used.loop"

--- A fake clock: now(), sleep(ms) advancing it, and the sleeps taken.
local function fake_clock()
  local c = { t = 0, sleeps = {} }
  function c.now() return c.t end
  function c.sleep(ms)
    c.sleeps[#c.sleeps + 1] = ms
    c.t = c.t + ms
  end
  return c
end

-- Options as args.lua hands them to the loop.
local function options(o)
  o.ports = o.ports or { 7 }
  if o.in_use == nil then o.in_use = true end
  o.attempt_ms = o.attempt_ms or 1000
  return o
end

--- A probe that answers `answer` and takes cost_ms of the fake clock;
-- it records the time and budget of every call.
local function probe_of(c, answer, cost_ms)
  local calls = {}
  return function(port, budget)
    calls[#calls + 1] = { t = c.t, port = port, budget = budget }
    c.t = c.t + (cost_ms or 0)
    if type(answer) == "function" then return answer(#calls) end
    return answer
  end, calls
end

describe("the retry loop on a fake clock", function()
  it("probes at once, then at intervals of an eighth of the time waited, from 5 ms up to 250 ms", function()
    local c = fake_clock()
    local infos = {}
    local probe, calls = probe_of(c, false, 1)
    local ok, err, code = loop.wait(options { timeout_ms = 2600, on_retry = function(i) infos[#infos + 1] = i end },
      probe, c.sleep, c.now)
    assert.same({ nil, "ETIMEDOUT" }, { ok, code })
    assert.matches("^timeout after 2600 ms waiting for ", err)
    assert.equals(0, calls[1].t)
    assert.equals(#calls, #c.sleeps + 1)
    for k, i in ipairs(infos) do
      assert.equals(k, i.attempt)
      assert.equals(c.sleeps[k], i.wait_ms)
      local want = math.min(250, math.max(5, i.elapsed_ms / 8))
      if k < #infos then
        assert.equals(want, i.wait_ms, "interval " .. k .. " after " .. i.elapsed_ms .. " ms")
      else
        -- the last sleep is cut to the deadline
        assert.equals(math.min(want, 2600 - i.elapsed_ms), i.wait_ms)
      end
    end
    assert.equals(5, infos[1].wait_ms)
    assert.equals(250, infos[#infos - 1].wait_ms)
    -- about 40 probes in the first 2 s, then 4 a second
    assert.is_true(#calls > 30 and #calls < 60, #calls .. " probes in 2.6 s")
    -- the timeout comes at the deadline plus the one last probe, not later
    assert.equals(2601, c.t)
  end)

  it("cuts the last sleep to the deadline instead of sleeping retry_ms past it", function()
    local c = fake_clock()
    local probe, calls = probe_of(c, false)
    assert.is_nil(loop.wait(options { retry_ms = 1000, timeout_ms = 300 }, probe, c.sleep, c.now))
    assert.same({ 300 }, c.sleeps)
    assert.equals(2, #calls)
    assert.equals(300, c.t)
  end)

  it("sleeps retry_ms between probes when it is given", function()
    local c = fake_clock()
    local probe = probe_of(c, false)
    loop.wait(options { retry_ms = 40, timeout_ms = 300 }, probe, c.sleep, c.now)
    assert.same({ 40, 40, 40, 40, 40, 40, 40, 20 }, c.sleeps)
  end)

  it("bounds each attempt by attempt_ms and by the time left, and gives the last one a millisecond", function()
    local c = fake_clock()
    local probe, calls = probe_of(c, function() return nil, "timed out", "ETIMEDOUT", "connect" end, 150)
    local ok, err, code, why = loop.wait(options { attempt_ms = 150, retry_ms = 100, timeout_ms = 500 },
      probe, c.sleep, c.now)
    assert.same({ nil, "ETIMEDOUT", "timed out", "ETIMEDOUT" }, { ok, code, why.probe[2], why.probe[3] })
    assert.matches("^timeout after 500 ms waiting for .*: timed out", err)
    local budgets = {}
    for k, call in ipairs(calls) do budgets[k] = call.budget end
    -- t = 0, 250: full attempts; t = 500: the deadline, one millisecond
    assert.same({ 150, 150, 1 }, budgets)
  end)

  it("returns true once every port is in the state, probing only those still waited for", function()
    local c = fake_clock()
    local seen = {}
    -- port 2 is in use from the start, port 1 from 20 ms on
    local function probe(port)
      seen[#seen + 1] = port
      return port == 2 or c.t >= 20
    end
    assert.is_true(loop.wait(options { ports = { 1, 2 }, retry_ms = 10, timeout_ms = 1000 }, probe, c.sleep, c.now))
    assert.same({ 1, 2, 1, 1 }, seen)
    assert.equals(20, c.t)
  end)

  it("gives up at once on a permanent error, without sleeping", function()
    local c = fake_clock()
    local probe, calls = probe_of(c, function() return nil, "permission denied", "EACCES", "connect" end)
    local ok, err, code = loop.wait(options { timeout_ms = 1000 }, probe, c.sleep, c.now)
    assert.same({ nil, "permission denied", "EACCES" }, { ok, err, code })
    assert.equals(1, #calls)
    assert.same({}, c.sleeps)
  end)
end)
