//! Policy documents: the data ([`ast`]), reading them with validation ([`parse`], element values in [`elements`]) and
//! writing them back ([`print`]).

pub mod ast;
pub mod elements;
pub mod parse;
mod print;
