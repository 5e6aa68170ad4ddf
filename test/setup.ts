/**
 * After every test of the suite: no secret the test helpers handed out or saw may appear in what the library
 * logged (to its logger or its `debug` namespaces), emitted, threw, or shows when inspected (see test/helpers/exposure.ts).
 */
import { format } from 'node:util'
import createDebug from 'debug'
import { afterEach, expect } from 'vitest'
import { suite } from './helpers/exposure.js'

// The library's `debug` trace (DEBUG=mqtt-bootstrap:*) is on for the whole suite and checked like the logs.
// Printed too only if the developer asked for it (enable() writes process.env.DEBUG: read it first).
const asked = process.env.DEBUG
createDebug.enable(asked ? `mqtt-bootstrap:*,${asked}` : 'mqtt-bootstrap:*')
if (asked === undefined) delete process.env.DEBUG // child processes of tests stay quiet
const print = createDebug.log
createDebug.log = (...args: unknown[]) => {
  suite.exposure.line(format(...args))
  if (asked) print(...args)
}

afterEach(() => {
  suite.exposure.add(...suite.objects.splice(0))
  const leaks = suite.exposure.leaks(suite.secrets)
  suite.exposure.clear()
  expect(leaks, 'secrets exposed by this test (logs, events, errors, inspected objects)').toEqual([])
})
