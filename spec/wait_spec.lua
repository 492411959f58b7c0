local tpu = require "tcp_port_used"
local core = require "tcp_port_used.core"
local H = require "helpers"

local now = core.now

describe("waits", function()
  local l, r = H.each_listener_and_refused(before_each, after_each)

  it("return true at once when the state already holds, in every form", function()
    assert.is_true(tpu.wait_until_used(l.port))
    assert.is_true(tpu.wait_until_used(l.port, 100, 1000))
    assert.is_true(tpu.wait_until_free(r.port, 100, 1000))
    assert.is_true(tpu.wait_until_used_on_host(l.port, "127.0.0.1", 100, 1000))
    assert.is_true(tpu.wait_until_free_on_host(r.port, "127.0.0.1"))
    assert.is_true(tpu.wait_for_status(l.port, "127.0.0.1", true, 100, 1000))
    assert.is_true(tpu.wait_for_status(r.port, "127.0.0.1", false, 100, 1000))
    assert.is_true(tpu.wait_for_status(r.port, nil, false))
    assert.is_true(tpu.wait_until_used { port = l.port, timeout_ms = 500 })
    assert.is_true(tpu.wait_until_free { port = r.port, host = "127.0.0.1" })
    assert.is_true(tpu.wait_until_used_on_host { port = l.port, host = "localhost" })
    assert.is_true(tpu.wait_until_free_on_host { port = r.port, host = "127.0.0.1" })
    assert.is_true(tpu.wait_for_status { port = l.port, in_use = true })
  end)

  it("time out with ETIMEDOUT and an explanation when the port never changes", function()
    local t0 = now()
    local ok, err, code, e = tpu.wait_until_used(r.port, 50, 300)
    local took = now() - t0
    assert.is_nil(ok)
    assert.equals("ETIMEDOUT", code)
    assert.equals("timeout after 300 ms waiting for 127.0.0.1:" .. r.port .. " or [::1]:" ..
      r.port .. ": " .. e.text, err)
    assert.is_true(took >= 300 and took < 1300, "took " .. took)

    ok, err, code, e = tpu.wait_until_free { port = l.port, retry_ms = 50, timeout_ms = 200 }
    assert.is_nil(ok)
    assert.equals("ETIMEDOUT", code)
    assert.equals("listening", e.state)
    assert.matches(": " .. e.text, err, 1, true)
  end)

  it("use 2000 ms as the default timeout", function()
    local t0 = now()
    local ok, _, code = tpu.wait_until_used(r.port)
    local took = now() - t0
    assert.same({ nil, "ETIMEDOUT" }, { ok, code })
    assert.is_true(took >= 2000 and took < 3500, "took " .. took)
  end)

  it("cut the last sleep to the deadline instead of sleeping retry_ms past it", function()
    local t0 = now()
    local ok = tpu.wait_until_used(r.port, 1000, 300)
    local took = now() - t0
    assert.is_nil(ok)
    assert.is_true(took >= 300 and took < 900, "took " .. took .. " ms with retry_ms 1000")
  end)

  it("see a port that opens later", function()
    local port = H.free_port()
    local pid = H.listen_later(port, 0.3, 5)
    local ok, err = tpu.wait_until_used { port = port, host = "127.0.0.1", timeout_ms = 10000 }
    H.kill(pid)
    assert.is_true(ok, err)
  end)

  it("see a port that becomes free later", function()
    local port = H.free_port()
    local pid = H.listen_until(port, 0.3)
    local ok, err = tpu.wait_until_free(port, 50, 10000)
    H.kill(pid)
    assert.is_true(ok, err)
  end)

  it("probe at the given retry_ms", function()
    local waits = {}
    tpu.wait_until_used { port = r.port, retry_ms = 40, timeout_ms = 300,
      on_retry = function(info) waits[#waits + 1] = info.wait_ms end }
    assert.is_true(#waits >= 5, #waits .. " retries")
    for i = 1, #waits - 1 do assert.equals(40, waits[i]) end
  end)

  it("start with short intervals that grow", function()
    -- (the whole schedule, up to 250 ms after 2 s, on a fake clock:
    -- loop_spec.lua; here the waits are seen to use it, on the real clock)
    local info = {}
    tpu.wait_until_used { port = r.port, timeout_ms = 700,
      on_retry = function(i) info[#info + 1] = i end }
    assert.is_true(info[1].wait_ms <= 10, "first interval " .. info[1].wait_ms)
    for i = 2, #info do
      assert.is_true(info[i].wait_ms >= info[i - 1].wait_ms or i == #info)
      assert.equals(i, info[i].attempt)
    end
    local last = info[#info - 1]
    assert.is_true(last.wait_ms >= 40 and last.wait_ms <= 250 and
      math.abs(last.wait_ms - math.max(5, last.elapsed_ms / 8)) < 1,
      last.wait_ms .. " ms after " .. last.elapsed_ms .. " ms")
    -- a bounded probe rate: about 25 probes in 0.7 s
    assert.is_true(#info < 40, #info .. " probes in 0.7 s")
  end)

  it("hand on_retry the ports still waited for and the last error", function()
    local b = H.full_backlog()
    local seen
    local ok, err, code, e = tpu.wait_until_used { ports = { b.port, l.port }, host = "127.0.0.1",
      attempt_ms = 50, retry_ms = 20, timeout_ms = 400,
      on_retry = function(i) seen = i end }
    -- a full backlog drops SYNs, so that port never answers
    b.close()
    assert.is_nil(ok)
    assert.equals("ETIMEDOUT", code)
    -- the port that never answered is the one explained: its queue is full
    -- (the portable build reads no tables: to the probe alone, a drop)
    assert.matches("waiting for 127.0.0.1:" .. b.port .. ": ", err, 1, true)
    assert.equals(H.portable and "filtered" or "backlog-full", e.state)
    assert.equals("ETIMEDOUT", e.probe[3])
    assert.same({ b.port }, seen.ports)
    assert.equals("ETIMEDOUT", seen.code)
  end)

  it("wait until every port of ports is in the state", function()
    local l2 = H.listen("127.0.0.1")
    assert.is_true(tpu.wait_until_used { ports = { l.port, l2.port }, timeout_ms = 500 })
    local ok, err, code = tpu.wait_until_used { ports = { l.port, r.port }, retry_ms = 20, timeout_ms = 200 }
    assert.same({ nil, "ETIMEDOUT" }, { ok, code })
    assert.matches("waiting for 127.0.0.1:" .. r.port, err, 1, true)
    l2.close()
  end)

  it("bound each attempt by attempt_ms and by the time left", function()
    local b = H.full_backlog()
    local t0 = now()
    local ok, err, code = tpu.wait_until_used { port = b.port, host = "127.0.0.1",
      attempt_ms = 5000, timeout_ms = 300 }
    local took = now() - t0
    b.close()
    assert.is_nil(ok)
    assert.equals("ETIMEDOUT", code)
    assert.matches("timeout after 300 ms", err, 1, true)
    assert.is_true(took < 1500, "took " .. took)
  end)

  it("return a permanent error at once", function()
    local t0 = now()
    local port = H.free_port()
    local ok, err, code = tpu.wait_until_free { port = port, host = "192.0.2.1", mode = "bind",
      timeout_ms = 5000 }
    assert.is_nil(ok)
    assert.equals("EADDRNOTAVAIL", code)
    assert.matches("bind 192.0.2.1:" .. port, err, 1, true)
    assert.is_true(now() - t0 < 1000)
  end)

  it("retry a name that does not resolve yet", function()
    if not H.can_unshare() then
      pending("no network namespaces here (a lookup would leave the machine)")
      return
    end
    local out = H.lua_in_netns([[
      local tpu = require "tcp_port_used"
      local n = 0
      local ok, msg, code, e = tpu.wait_until_used { port = 80, host = "nonexistent.invalid",
        retry_ms = 20, timeout_ms = 300, on_retry = function() n = n + 1 end }
      print(ok, msg, code, e.state)
      print(n)]])
    local first, n = out:match("^([^\n]*)\n(%d+)")
    assert.matches("^nil\ttimeout after 300 ms waiting for nonexistent.invalid:80: resolve " ..
      "nonexistent.invalid: .*\tETIMEDOUT\tno%-name$", first)
    assert.is_true(tonumber(n) >= 3, out)
  end)

  it("wait in bind and any mode", function()
    assert.is_true(tpu.wait_until_used { port = l.port, mode = "bind", timeout_ms = 300 })
    assert.is_true(tpu.wait_until_free { port = H.free_port(), mode = "any", timeout_ms = 300 })
  end)
end)
