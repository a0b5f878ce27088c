//! One QuickJS runtime with every script compiled into a context of its own, and the calls run
//! on it under the time and memory caps.
//!
//! Owns the sandbox: a context has the language's built-ins (JSON, Math, Date, ...) and nothing
//! else (no module loader is set, QuickJS's `std`/`os` modules are not part of `rquickjs`, and
//! no host function is registered), so a script can compute and nothing more. It must never be
//! shared between threads (QuickJS runtimes are single-threaded) and never run a call without
//! the deadline armed.

use std::cell::Cell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use rquickjs::context::EvalOptions;
use rquickjs::{CatchResultExt, CaughtError, Context, Function, Runtime, Value};

use super::{Script, TransformError, TransformInput, TransformSettings, Transformed, shape};

/// A QuickJS runtime holding compiled scripts. Not `Send`: each thread that runs transforms
/// makes its own.
pub struct Engine {
    runtime: Runtime,
    scripts: HashMap<Arc<str>, Context>,
    /// When the call in progress must stop; `None` between calls.
    deadline: Rc<Cell<Option<Instant>>>,
    /// Set by the interrupt handler when it stopped a call.
    interrupted: Rc<Cell<bool>>,
    settings: TransformSettings,
}

impl Engine {
    /// A runtime with the caps of `settings` and every script compiled, each in its own context
    /// (scripts cannot see each other's globals). A script that does not compile, or does not
    /// define `transform`, is an error naming its file (and line).
    pub fn new(settings: &TransformSettings, scripts: &[Script]) -> Result<Self, TransformError> {
        let runtime = Runtime::new().map_err(|e| TransformError::Engine(e.to_string()))?;
        runtime.set_memory_limit(settings.memory_limit_bytes);
        let deadline: Rc<Cell<Option<Instant>>> = Rc::new(Cell::new(None));
        let interrupted = Rc::new(Cell::new(false));
        let (d, i) = (deadline.clone(), interrupted.clone());
        // QuickJS calls this every few thousand instructions: an endless loop is stopped
        // within moments of its deadline, and the exception it gets cannot be caught.
        runtime.set_interrupt_handler(Some(Box::new(move || {
            let stop = d.get().is_some_and(|at| Instant::now() >= at);
            if stop {
                i.set(true);
            }
            stop
        })));
        let mut engine = Self {
            runtime,
            scripts: HashMap::new(),
            deadline,
            interrupted,
            settings: settings.clone(),
        };
        for script in scripts {
            engine.load(script)?;
        }
        Ok(engine)
    }

    /// Compile and run a script's top level (under the caps: a top level that loops forever
    /// stops start-up too), then check that it defines `transform`.
    fn load(&mut self, script: &Script) -> Result<(), TransformError> {
        let context =
            Context::full(&self.runtime).map_err(|e| TransformError::Engine(e.to_string()))?;
        let file = script.name.clone();
        self.arm();
        let loaded = context.with(|ctx| {
            let mut options = EvalOptions::default();
            options.filename = Some(file.to_string());
            ctx.eval_with_options::<(), _>(script.source.as_str(), options)
                .catch(&ctx)
                .map_err(|e| match self.failure(&file, e) {
                    TransformError::Thrown {
                        file,
                        line,
                        message,
                    } => TransformError::Compile {
                        file,
                        line,
                        message,
                    },
                    other => other,
                })?;
            match ctx.globals().get::<_, Value>("transform") {
                Ok(v) if v.is_function() => Ok(()),
                _ => Err(TransformError::NoFunction { file: file.clone() }),
            }
        });
        self.disarm();
        loaded?;
        self.scripts.insert(file, context);
        Ok(())
    }

    /// Call `transform(event)` of the script named `script`.
    pub fn run(&self, script: &str, input: &TransformInput) -> Result<Transformed, TransformError> {
        let Some((file, context)) = self.scripts.get_key_value(script) else {
            return Err(TransformError::Unknown {
                file: script.into(),
            });
        };
        let json = serde_json::to_string(input).map_err(|e| TransformError::Shape {
            file: file.clone(),
            problem: format!("the event cannot be handed to the script: {e}"),
        })?;
        self.arm();
        let result = context.with(|ctx| {
            let f: Function = ctx
                .globals()
                .get("transform")
                .map_err(|_| TransformError::NoFunction { file: file.clone() })?;
            let event = ctx
                .json_parse(json)
                .catch(&ctx)
                .map_err(|e| self.failure(file, e))?;
            let out: Value = f
                .call((event,))
                .catch(&ctx)
                .map_err(|e| self.failure(file, e))?;
            shape::read(&ctx, out).map_err(|e| match e {
                shape::Refused::Shape(problem) => TransformError::Shape {
                    file: file.clone(),
                    problem,
                },
                shape::Refused::Caught(e) => self.failure(file, e),
            })
        });
        self.disarm();
        if result.is_err() {
            // Whatever a failed call left behind (an allocation that hit the cap, cycles)
            // must not count against the next one.
            self.runtime.run_gc();
        }
        result
    }

    fn arm(&self) {
        self.interrupted.set(false);
        self.deadline
            .set(Some(Instant::now() + self.settings.timeout));
    }

    fn disarm(&self) {
        self.deadline.set(None);
    }

    /// What an exception means: the deadline's interrupt, the memory cap, or the script's own
    /// error with the line it was thrown from.
    fn failure(&self, file: &Arc<str>, caught: CaughtError<'_>) -> TransformError {
        if self.interrupted.get() {
            return TransformError::Timeout {
                file: file.clone(),
                timeout: self.settings.timeout,
            };
        }
        let memory = || TransformError::Memory {
            file: file.clone(),
            limit_bytes: self.settings.memory_limit_bytes,
        };
        let (message, line) = match caught {
            CaughtError::Error(rquickjs::Error::Allocation) => return memory(),
            CaughtError::Error(e) => (e.to_string(), None),
            CaughtError::Exception(ex) => {
                let message = ex.message().unwrap_or_default();
                if message == "out of memory" {
                    return memory();
                }
                let name: String = ex
                    .get::<_, Option<String>>("name")
                    .ok()
                    .flatten()
                    .unwrap_or_else(|| "Error".into());
                let stack = ex.stack().unwrap_or_default();
                (format!("{name}: {message}"), line_in(&stack, file))
            }
            CaughtError::Value(v) => {
                let shown = v
                    .ctx()
                    .json_stringify(v.clone())
                    .ok()
                    .flatten()
                    .and_then(|s| s.to_string().ok())
                    .unwrap_or_else(|| v.type_name().to_owned());
                (format!("threw {shown}"), None)
            }
        };
        TransformError::Thrown {
            file: file.clone(),
            line,
            message,
        }
    }
}

/// The line of `file` in a QuickJS stack trace (`    at transform (transforms/x.js:7:11)`):
/// the innermost frame in the script.
fn line_in(stack: &str, file: &str) -> Option<u32> {
    let pattern = format!("{file}:");
    let start = stack.find(&pattern)? + pattern.len();
    let digits: String = stack[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}
