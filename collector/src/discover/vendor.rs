//! Vendor and model from sysObjectID: the enterprise number under
//! 1.3.6.1.4.1 names the vendor; a small table names common models of the
//! vendors in Indonesian government networks.

/// Enterprise number → vendor.
const VENDORS: &[(u32, &str)] = &[
    (9, "Cisco"),
    (11, "HPE"),
    (2011, "Huawei"),
    (2636, "Juniper"),
    (4881, "Ruijie"),
    (8072, "Net-SNMP"),
    (11863, "TP-Link"),
    (14823, "Aruba"),
    (14988, "MikroTik"),
    (25506, "H3C"),
];

/// sysObjectID (dotted) → model, where it is cheap to know.
const MODELS: &[(&str, &str)] = &[
    ("1.3.6.1.4.1.9.1.516", "Catalyst 3750 stack"),
    ("1.3.6.1.4.1.9.1.1208", "Catalyst 2960 stack"),
    ("1.3.6.1.4.1.9.1.1745", "Catalyst 3850 stack"),
    ("1.3.6.1.4.1.14988.1", "RouterOS"),
    ("1.3.6.1.4.1.8072.3.2.10", "Linux"),
];

const ENTERPRISES: &str = "1.3.6.1.4.1.";

/// The vendor and model (each empty when unknown) of `sys_object_id`.
pub fn identify(sys_object_id: &str) -> (String, String) {
    let oid = sys_object_id.trim().trim_start_matches('.');
    let vendor = oid
        .strip_prefix(ENTERPRISES)
        .and_then(|rest| rest.split('.').next())
        .and_then(|n| n.parse::<u32>().ok())
        .and_then(|n| VENDORS.iter().find(|(e, _)| *e == n))
        .map(|(_, v)| v.to_string())
        .unwrap_or_default();
    let model = MODELS
        .iter()
        .find(|(o, _)| *o == oid)
        .map(|(_, m)| m.to_string())
        .unwrap_or_default();
    (vendor, model)
}

/// The kind a vendor's device most likely is, when LLDP does not say.
pub fn kind_of_vendor(vendor: &str) -> &'static str {
    match vendor {
        "MikroTik" | "Juniper" => "router",
        "Cisco" | "HPE" | "Aruba" | "H3C" | "Huawei" | "Ruijie" | "TP-Link" => "switch",
        "Net-SNMP" => "server",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_case::test_case;

    #[test_case("1.3.6.1.4.1.9.1.1208" => ("Cisco".to_string(), "Catalyst 2960 stack".to_string()); "cisco with model")]
    #[test_case(".1.3.6.1.4.1.9.1.99999" => ("Cisco".to_string(), String::new()); "cisco unknown model, leading dot")]
    #[test_case("1.3.6.1.4.1.14988.1" => ("MikroTik".to_string(), "RouterOS".to_string()); "mikrotik")]
    #[test_case("1.3.6.1.4.1.2011.2.23.96" => ("Huawei".to_string(), String::new()); "huawei")]
    #[test_case("1.3.6.1.4.1.11.2.3.7.11.181" => ("HPE".to_string(), String::new()); "hpe")]
    #[test_case("1.3.6.1.4.1.14823.1.1.32" => ("Aruba".to_string(), String::new()); "aruba")]
    #[test_case("1.3.6.1.4.1.25506.1.1" => ("H3C".to_string(), String::new()); "h3c")]
    #[test_case("1.3.6.1.4.1.2636.1.1.1.2.31" => ("Juniper".to_string(), String::new()); "juniper")]
    #[test_case("1.3.6.1.4.1.4881.1.1.10.1.1" => ("Ruijie".to_string(), String::new()); "ruijie")]
    #[test_case("1.3.6.1.4.1.11863.5.1" => ("TP-Link".to_string(), String::new()); "tp-link")]
    #[test_case("1.3.6.1.4.1.99999.1" => (String::new(), String::new()); "unknown enterprise")]
    #[test_case("garbage" => (String::new(), String::new()); "garbage")]
    fn vendors(oid: &str) -> (String, String) {
        identify(oid)
    }
}
