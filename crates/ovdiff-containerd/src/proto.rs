//! The containerd API types and stubs generated from the vendored `.proto` files (see
//! `build.rs`): the Diff server this plugin implements, and the Content and Leases clients it
//! writes blobs with. Modules nest as the protobuf packages do, so cross-package references in
//! the generated code resolve.

#![allow(missing_docs, clippy::all, clippy::pedantic, unreachable_pub)]

/// `containerd.*` packages.
pub mod containerd {
    /// `containerd.types`: Mount, Descriptor.
    pub mod types {
        tonic::include_proto!("containerd.types");
    }

    /// `containerd.services.*`.
    pub mod services {
        /// `containerd.services.diff.v1`.
        pub mod diff {
            /// Version 1.
            pub mod v1 {
                tonic::include_proto!("containerd.services.diff.v1");
            }
        }

        /// `containerd.services.content.v1`.
        pub mod content {
            /// Version 1.
            pub mod v1 {
                tonic::include_proto!("containerd.services.content.v1");
            }
        }

        /// `containerd.services.leases.v1`.
        pub mod leases {
            /// Version 1.
            pub mod v1 {
                tonic::include_proto!("containerd.services.leases.v1");
            }
        }
    }
}

pub use containerd::services::content::v1 as content;
pub use containerd::services::diff::v1 as diff;
pub use containerd::services::leases::v1 as leases;
pub use containerd::types;
