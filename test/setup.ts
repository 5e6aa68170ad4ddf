/**
 * After every test of the suite: no secret the test helpers handed out or saw may appear in what the library
 * logged, emitted, threw, or shows when inspected (see test/helpers/exposure.ts).
 */
import { afterEach, expect } from 'vitest'
import { suite } from './helpers/exposure.js'

afterEach(() => {
  suite.exposure.add(...suite.objects.splice(0))
  const leaks = suite.exposure.leaks(suite.secrets)
  suite.exposure.clear()
  expect(leaks, 'secrets exposed by this test (logs, events, errors, inspected objects)').toEqual([])
})
