-- examples/game_loop.lua: a 60 Hz tick loop keeps its rate while several
-- of its coroutines wait for a port that a game event opens later.
local H = require "helpers"

package.path = H.root .. "/examples/?.lua;" .. package.path
local run = require "game_loop"

describe("the game loop example", function()
  it("keeps ticking at its rate while waits are pending, and the waits succeed", function()
    local r = H.reserve() -- bound, not listening: refused until the event
    local tick, opened_at, done_at, worked = 0, nil, {}, 0
    local tasks = {
      function() -- the event: a backend comes up after 20 ticks
        for _ = 1, 20 do coroutine.yield() end
        assert(r.sock:listen(32))
        opened_at = tick
      end,
    }
    local function waiter(k)
      return function()
        local ok, err = require("tcp_port_used").wait_until_used { port = r.port, timeout_ms = 10000 }
        done_at[k] = tick
        return ok, err
      end
    end
    for k = 1, 4 do tasks[#tasks + 1] = waiter(k) end
    for _ = 1, 20 do
      tasks[#tasks + 1] = function()
        while #done_at < 4 do
          worked = worked + 1
          coroutine.yield()
        end
      end
    end
    local result = run { hz = 60, tasks = tasks, stop = function(s)
      tick = s.ticks + 1 -- the tick about to run
      return false
    end }
    r.close()
    for k = 2, 5 do
      assert.same({ n = 2, true }, result.results[k]) -- ok, err
    end
    assert.is_true(opened_at >= 20)
    for k = 1, 4 do
      -- pending for the 20 ticks before the event, done soon after it
      assert.is_true(done_at[k] >= opened_at and done_at[k] <= opened_at + 60,
        "waiter " .. k .. " done at tick " .. done_at[k] .. ", opened at " .. opened_at)
    end
    assert.is_true(worked >= 20 * 20, "game work ran " .. worked .. " times")
    -- 60 Hz with generous bounds: a blocked loop would stall for whole waits
    assert.is_true(result.rate >= 30 and result.rate <= 75, "rate " .. result.rate)
    assert.is_true(result.max_gap_ms < 250, "longest gap " .. result.max_gap_ms .. " ms")
  end)

  it("keeps ticking through a wait that times out", function()
    local r = H.reserve()
    local result = run { hz = 60, tasks = {
      function()
        return require("tcp_port_used").wait_until_used { port = r.port, timeout_ms = 400 }
      end,
    } }
    r.close()
    assert.same({ nil, "ETIMEDOUT" }, { result.results[1][1], result.results[1][3] })
    assert.is_true(result.ticks >= 12, result.ticks .. " ticks in " .. result.elapsed_ms .. " ms")
    assert.is_true(result.max_gap_ms < 250, "longest gap " .. result.max_gap_ms .. " ms")
  end)

  it("runs as a script and reports its tick rate", function()
    local l = H.listen()
    local out, rc = H.run(H.lua_cmd("") .. " " ..
      H.root .. "/examples/game_loop.lua " .. l.port .. " 2>&1")
    l.close()
    assert.equals(0, rc, out)
    assert.matches("port " .. l.port .. ": ready\n", out, 1, true)
    assert.matches("%d+ ticks in %d+ ms: [%d.]+ ticks/s", out)
  end)
end)
