//! What cozyboot keeps in the data dir: its record of what it wrote ([`state`]), the files
//! of the matchbox tree it did not write ([`hand_made`]), and the Talos configs withdrawn once
//! their machines had them ([`withdrawal`]).

pub mod hand_made;
pub mod state;
pub mod withdrawal;
