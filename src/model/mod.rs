//! Model description shared by both backends: parameters under the official
//! names, sizes, and the packed layout of a scoring tile.

pub mod init;
pub mod layout;
pub mod params;
