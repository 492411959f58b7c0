local tpu = require "tcp_port_used"
local core = require "tcp_port_used.core"
local H = require "helpers"

local now = core.now

describe("how a wait sleeps", function()
  local _, r = H.each_listener_and_refused(before_each, after_each)

  it("calls opts.sleep between retries", function()
    local slept = {}
    local ok, _, code = tpu.wait_until_used { port = r.port, retry_ms = 30, timeout_ms = 200,
      sleep = function(ms) slept[#slept + 1] = ms; core.sleep(ms) end }
    assert.same({ nil, "ETIMEDOUT" }, { ok, code })
    assert.is_true(#slept >= 4, #slept .. " sleeps")
    assert.equals(30, slept[1])
  end)

  it("blocks on the main thread", function()
    assert.is_false(coroutine.isyieldable and coroutine.isyieldable() or false)
    local t0 = now()
    local ok, _, code = tpu.wait_until_used(r.port, 20, 150)
    assert.same({ nil, "ETIMEDOUT" }, { ok, code })
    assert.is_true(now() - t0 >= 150)
  end)

  describe("inside a coroutine", function()
    it("yields the milliseconds until the next probe", function()
      local co = coroutine.create(function()
        return tpu.wait_until_used(r.port, 100, 10000)
      end)
      local ok, ms = coroutine.resume(co)
      assert.is_true(ok)
      assert.equals("suspended", coroutine.status(co))
      assert.is_number(ms)
      assert.is_true(ms > 50 and ms <= 100, "yielded " .. tostring(ms))
    end)

    it("yields again with what is left when resumed early", function()
      local probes = 0
      local co = coroutine.create(function()
        return tpu.wait_until_used { port = r.port, retry_ms = 200, timeout_ms = 10000,
          on_retry = function() probes = probes + 1 end }
      end)
      local _, first = coroutine.resume(co)
      assert.equals(1, probes)
      local _, second = coroutine.resume(co)
      assert.equals(1, probes, "an early resume must not probe")
      assert.is_true(second <= first and second > 100, first .. " then " .. second)
    end)

    it("probes at once when resumed late, and returns the wait's values", function()
      local port = H.free_port()
      local co = coroutine.create(function()
        return tpu.wait_until_used { port = port, host = "127.0.0.1", retry_ms = 100,
          timeout_ms = 10000 }
      end)
      local _, ms = coroutine.resume(co)
      assert.is_number(ms)
      local later = H.listen("127.0.0.1", port)
      core.sleep(ms + 50)
      local ok, v = coroutine.resume(co)
      later.close()
      assert.is_true(ok)
      assert.equals("dead", coroutine.status(co))
      assert.is_true(v)
    end)

    it("does not block while a connect is pending", function()
      local b = H.full_backlog()
      local co = coroutine.create(function()
        return tpu.wait_until_used { port = b.port, host = "127.0.0.1", attempt_ms = 1000,
          timeout_ms = 3000 }
      end)
      local t0 = now()
      local _, ms = coroutine.resume(co)
      local took = now() - t0
      b.close()
      assert.is_number(ms)
      assert.is_true(took < 100, "resume took " .. took .. " ms")
    end)

    it("does not yield with yield = false", function()
      local co = coroutine.create(function()
        return tpu.wait_until_used { port = r.port, retry_ms = 20, timeout_ms = 100, yield = false }
      end)
      local ok, v, _, code = coroutine.resume(co)
      assert.is_true(ok)
      assert.equals("dead", coroutine.status(co))
      assert.same({ nil, "ETIMEDOUT" }, { v, code })
    end)

    it("leaks nothing when abandoned", function()
      local b = H.full_backlog()
      local before = H.fd_count()
      for _ = 1, 50 do
        local co = coroutine.create(function()
          return tpu.wait_until_used { port = b.port, host = "127.0.0.1", timeout_ms = 60000 }
        end)
        coroutine.resume(co)
        if coroutine.close then
          assert.is_true(coroutine.close(co))
        end
      end
      assert.equals(before, H.fd_count())
      b.close()
    end)
  end)

  describe("run", function()
    it("runs several waits at once and returns their values in order", function()
      local port = H.free_port()
      local later
      local t0 = now()
      local res = tpu.run(
        function() return tpu.wait_until_used { port = port, host = "127.0.0.1", timeout_ms = 5000 } end,
        function() return tpu.wait_until_used(r.port, 50, 400) end,
        coroutine.create(function()
          coroutine.yield(100)
          later = H.listen("127.0.0.1", port)
          return "opened", port
        end))
      local took = now() - t0
      later.close()
      assert.same({ n = 1, true }, res[1])
      assert.same({ nil, "ETIMEDOUT" }, { res[2][1], res[2][3] })
      assert.same({ n = 2, "opened", port }, res[3])
      assert.is_true(took >= 400 and took < 2000, "took " .. took)
    end)

    it("raises the error of a function that fails", function()
      local ok, err = pcall(tpu.run, function() return 1 end, function() error("boom", 0) end)
      assert.is_false(ok)
      assert.equals("boom", err)
    end)

    it("rejects what it cannot run", function()
      assert.has_error(function() tpu.run(1) end,
        "bad argument #1 to 'run' (function or suspended coroutine expected, got number)")
    end)
  end)

  it("sleeps in C for the time asked, whatever signals arrive", function()
    local out, rc = H.run(H.lua_cmd([[
      local core = require "tcp_port_used.core"
      local t0 = core.now()
      core.sleep(300)
      print(core.now() - t0)]]) ..
      " & pid=$!; for i in $(seq 30); do kill -s CONT $pid 2>/dev/null; sleep 0.005; done; wait $pid")
    assert.equals(0, rc)
    local took = tonumber(out)
    assert.is_true(took >= 300 and took < 1000, out)
  end)
end)
