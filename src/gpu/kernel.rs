//! What a kernel is to the engine: one entry point of a WGSL source, the access of each
//! binding, and constants appended to the source. The typed tables of which kernels exist
//! live with the ops that launch them (ops::*).

/// vec4s in a binding read as Access::Uniform: 64 KiB, the WebGPU minimum of
/// max_uniform_buffer_binding_size (so every adapter takes it).
pub const UNIFORM_VEC4S: usize = 4096;

/// `source` with its read-only `array<vec4<f32>>` declarations at `binding` turned uniform.
pub(crate) fn uniform_vec4_binding(source: &str, binding: usize) -> String {
    let head = format!("@binding({binding}) var<storage, read> ");
    source
        .lines()
        .map(|line| match line.split_once(&head) {
            Some((before, rest)) if rest.ends_with(": array<vec4<f32>>;") => {
                let name = rest.trim_end_matches(": array<vec4<f32>>;");
                format!("{before}@binding({binding}) var<uniform> {name}: array<vec4<f32>, {UNIFORM_VEC4S}>;")
            }
            _ => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// How a kernel sees one of its storage bindings (binding 0 is always its uniform parameters).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    Read,
    ReadWrite,
    /// Read through a uniform binding: a read-only `array<vec4<f32>>` of the shader becomes
    /// `var<uniform>` with UNIFORM_VEC4S elements (the tensor must hold that many floats x 4).
    /// lavapipe gathers uniform loads branch-free, but runs every storage load as a loop over
    /// the lanes with a bounds test per lane: a kernel's small operand (a conv's weights)
    /// reads 1.5x faster from here (benches/tiles.rs, fwd_wt).
    Uniform,
}

/// A WGSL source: the file's name (for messages) and its text, with any shared header or
/// epilogue it uses already joined to it (after it, so line numbers of the file stay true).
#[derive(Clone, Copy, Debug)]
pub struct Source {
    pub file: &'static str,
    pub text: &'static str,
}

/// The entry points of one WGSL source as a Rust enum: a kernel that does not exist cannot be
/// named. Declared with `kernel_table!` beside the op that launches them.
pub trait Entry: Copy + std::fmt::Debug + 'static {
    const SOURCE: Source;
    /// Every entry point, for validation and listings.
    const ALL: &'static [Self];
    /// The WGSL function name.
    fn name(self) -> &'static str;
    /// How the kernel declares its bindings 1.. (binding 0 is its uniform parameters).
    fn bindings(self) -> &'static [Access];
}

/// Declares an enum of a WGSL source's entry points with each one's function name and
/// bindings, and implements `gpu::Entry` for it:
/// `kernel_table!(pub enum Sgd in SOURCE { Step = "step" [Read, ReadWrite, ReadWrite], ... })`.
#[macro_export]
macro_rules! kernel_table {
    ($(#[$doc:meta])* pub enum $name:ident in $source:ident { $($(#[$vdoc:meta])* $variant:ident = $entry:literal [$($access:ident),* $(,)?]),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant),*
        }
        impl $crate::gpu::Entry for $name {
            const SOURCE: $crate::gpu::Source = $source;
            const ALL: &'static [Self] = &[$($name::$variant),*];
            fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $entry),*
                }
            }
            fn bindings(self) -> &'static [$crate::gpu::Access] {
                match self {
                    $($name::$variant => &[$($crate::gpu::Access::$access),*]),*
                }
            }
        }
    };
}

/// One entry point of one WGSL source, with the constants appended to it: what the engine
/// compiles (once per distinct spec) and launches.
#[derive(Clone, Debug)]
pub struct KernelSpec {
    pub file: &'static str,
    pub source: &'static str,
    pub entry: &'static str,
    pub bindings: Vec<Access>,
    /// WGSL `const` declarations appended after the file (so line numbers stay true).
    pub constants: String,
}

impl KernelSpec {
    pub fn of<E: Entry>(entry: E) -> Self {
        KernelSpec {
            file: E::SOURCE.file,
            source: E::SOURCE.text,
            entry: entry.name(),
            bindings: entry.bindings().to_vec(),
            constants: String::new(),
        }
    }
    pub fn with_const(mut self, name: &str, value: u32) -> Self {
        self.constants.push_str(&format!("const {name}: u32 = {value}u;\n"));
        self
    }
    /// Any other module-scope declaration (an alias, a helper function) appended the same way.
    pub fn with_decl(mut self, decl: &str) -> Self {
        self.constants.push_str(decl);
        self.constants.push('\n');
        self
    }
    /// The same kernel with binding `binding` (1-based) read as Access::Uniform.
    pub fn with_uniform(mut self, binding: usize) -> Self {
        self.bindings[binding - 1] = Access::Uniform;
        self
    }
    /// How many storage buffers the kernel binds (the adapter must offer as many per stage).
    pub fn storage_bindings(&self) -> u32 {
        self.bindings.iter().filter(|a| **a != Access::Uniform).count() as u32
    }
    pub fn full_source(&self) -> String {
        format!("{}\n{}", self.source, self.constants)
    }
}
