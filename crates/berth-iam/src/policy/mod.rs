//! Policy documents: the data ([`ast`]), reading them with validation ([`parse`]) and
//! writing them back ([`print`]).

pub mod ast;
pub mod parse;
mod print;
