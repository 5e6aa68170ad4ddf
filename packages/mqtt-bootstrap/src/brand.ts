/**
 * `instanceof` across copies of this library (the ESM and CJS builds side by side, two versions in one tree): each
 * branded class checks a brand, `Symbol.for('mqtt-bootstrap.<ClassName>')`, not its prototype, as undici does.
 */
type Class = abstract new (...args: never[]) => object

/**
 * Make `instanceof target` true of every object carrying `target`'s brand, whichever copy of this library made it.
 * A class extending `target` without a brand of its own inherits the hook, and gets the ordinary prototype check.
 */
export function brand(target: Class, name: string): void {
  const key = Symbol.for(`mqtt-bootstrap.${name}`)
  Object.defineProperty(target.prototype, key, { value: true })
  Object.defineProperty(target, Symbol.hasInstance, {
    value(this: Class, value: unknown): boolean {
      if (this !== target) return Function.prototype[Symbol.hasInstance].call(this, value)
      return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[key] === true
    },
  })
}
