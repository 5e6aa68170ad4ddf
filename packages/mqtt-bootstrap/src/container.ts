/**
 * The part of a tsyringe container the library uses, declared here: tsyringe is an optional peer of the device
 * package (only an app that uses dependency injection has it, and then the app's own copy is the one used), so the
 * published declarations must not need it installed. A tsyringe `DependencyContainer` is a `Container`, and a
 * `Token<T>` is a tsyringe `InjectionToken<T>` that keeps its `T` (`container.resolve(TOKENS.Logger)` is a Logger);
 * test/types.test.ts checks both.
 */

/** A seam's token: a symbol (TOKENS), or a class. The constructor member carries `T` for tsyringe's inference. */
// biome-ignore lint/suspicious/noExplicitAny: tsyringe's own `constructor<T>` takes `any[]`; `never[]` breaks inference
export type Token<T> = symbol | (new (...args: any[]) => T)

export interface Container {
  createChildContainer(): Container
  isRegistered<T>(token: Token<T>, recursive?: boolean): boolean
  register<T>(token: Token<T>, provider: { useValue: T }): Container
  register<T>(token: Token<T>, provider: { useFactory: (container: Container) => T }): Container
  resolve<T>(token: Token<T>): T
}
