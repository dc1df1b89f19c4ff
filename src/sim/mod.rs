//! The Modbus device simulator behind `gasdtu simulate` and `gasdtu demo`. (being built)
