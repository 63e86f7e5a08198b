//! `[[endpoint_source]]`: validates the table naming Prometheus file_sd files into
//! [`EndpointSource`]. The files themselves are read by the service (`config::file_sd`
//! parses them); here only the patterns and the probe settings are checked.

use std::time::Duration;

use toml::Spanned;

use crate::config::ConfigError;
use crate::config::locate::join;
use crate::config::model::{EndpointSource, ExporterSettings, ProbeModule, ScannerSettings};
use crate::config::raw::RawEndpointSource;
use crate::config::validate::{Context, probe_options};

/// Every `[[endpoint_source]]` table, in order.
pub(crate) fn endpoint_sources(
    raw: Vec<Spanned<RawEndpointSource>>,
    exporter: &ExporterSettings,
    scanner: &ScannerSettings,
    cx: &Context<'_>,
) -> Result<Vec<EndpointSource>, ConfigError> {
    raw.into_iter()
        .enumerate()
        .map(|(index, table)| {
            let prefix = format!("endpoint_source[{index}]");
            endpoint_source(
                table.into_inner(),
                &prefix,
                exporter,
                scanner.default_timeout,
                cx,
            )
        })
        .collect()
}

fn endpoint_source(
    mut raw: RawEndpointSource,
    prefix: &str,
    exporter: &ExporterSettings,
    default_timeout: Duration,
    cx: &Context<'_>,
) -> Result<EndpointSource, ConfigError> {
    let key = |name: &str| join(Some(prefix), name);
    cx.non_empty(
        &raw.files,
        key("files"),
        "no files; list file_sd files or patterns, e.g. files = [\"targets/*.json\"]",
    )?;
    let mut files = Vec::with_capacity(raw.files.get_ref().len());
    for (index, pattern) in raw.files.get_ref().iter().enumerate() {
        let entry_key = format!("{}[{index}]", key("files"));
        let path = cx.path(pattern, entry_key.clone())?;
        let path = path.to_string_lossy().into_owned();
        if let Err(error) = glob::Pattern::new(&path) {
            return Err(cx.error(
                pattern.span(),
                entry_key,
                format!("invalid glob pattern: {}", error.msg),
            ));
        }
        files.push(path);
    }
    let interval = cx.interval(raw.interval.as_ref(), key("interval"))?;
    let options = Some(raw.take_probe_options()).filter(|options| !options.is_empty());
    let probe = match (&raw.module, options) {
        (Some(module), Some(_)) => {
            return Err(cx.error(
                module.span(),
                key("module"),
                "module and probe options (sni, starttls, ca_file, client_cert, client_key, \
                 timeout, ip_family, resolve) exclude each other; set them in the module or \
                 remove module"
                    .to_owned(),
            ));
        }
        (Some(module), None) => match exporter.modules.get(module.get_ref()) {
            Some(settings) => settings.clone(),
            None => {
                let known: Vec<&str> = exporter.modules.keys().map(String::as_str).collect();
                return Err(cx.error(
                    module.span(),
                    key("module"),
                    format!(
                        "no [exporter.module.{}]; known modules: {}",
                        module.get_ref(),
                        known.join(", ")
                    ),
                ));
            }
        },
        (None, Some(options)) => probe_options(options, prefix, default_timeout, cx)?,
        (None, None) => ProbeModule::with_timeout(default_timeout),
    };
    Ok(EndpointSource {
        files,
        interval,
        probe,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use crate::config::model::StartTls;
    use crate::config::parse;

    #[test]
    fn patterns_resolve_against_the_config_directory_and_the_module_sets_the_probe() {
        let text = "[exporter.module.smtp]\nstarttls = \"smtp\"\n\n\
                    [[endpoint_source]]\nfiles = [\"targets/*.json\", \"/abs/*.yml\"]\n\
                    interval = \"30s\"\nmodule = \"smtp\"\n\n\
                    [[endpoint_source]]\nfiles = [\"x.yaml\"]\ntimeout = \"3s\"\n";
        let config = parse(text, Some(Path::new("/etc/certinel/certinel.toml"))).expect("valid");
        let [first, second] = config.endpoint_sources.as_slice() else {
            panic!("two sources: {:?}", config.endpoint_sources);
        };
        assert_eq!(first.files, ["/etc/certinel/targets/*.json", "/abs/*.yml"]);
        assert_eq!(first.interval, Duration::from_secs(30));
        assert_eq!(first.probe.starttls, Some(StartTls::Smtp));
        assert_eq!(second.interval, Duration::from_secs(300), "the default");
        assert_eq!(second.probe.timeout, Duration::from_secs(3));
        assert_eq!(second.probe.starttls, None);
    }
}
