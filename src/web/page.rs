//! The console's HTML (askama templates, checked at compile time), its stylesheet and its
//! script, all compiled into the binary: nothing is fetched from elsewhere.

use crate::config::Config;
use askama::Template;

pub const CSS: &str = include_str!("assets/console.css");
pub const JS: &str = include_str!("assets/console.js");

#[derive(Template)]
#[template(path = "console.html")]
struct ConsolePage<'a> {
    csrf: &'a str,
    version: &'a str,
    restart_settings: &'a [(String, String)],
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    error: Option<&'a str>,
}

pub fn render_console(csrf: &str, restart_settings: &[(String, String)]) -> askama::Result<String> {
    ConsolePage { csrf, version: env!("CARGO_PKG_VERSION"), restart_settings }.render()
}

pub fn render_login(error: Option<&str>) -> askama::Result<String> {
    LoginPage { error }.render()
}

/// The settings read only at start (sidekick.toml), shown with their current values.
pub fn restart_settings(config: &Config) -> Vec<(String, String)> {
    let m = &config.model;
    let g = &config.generation;
    vec![
        ("model.path".into(), m.path.display().to_string()),
        ("model.context_tokens".into(), m.context_tokens.to_string()),
        ("model.parallel".into(), m.parallel.to_string()),
        ("model.threads".into(), format!("{:?}", m.threads).to_lowercase()),
        ("generation.top_p".into(), g.top_p.to_string()),
        ("generation.top_k".into(), g.top_k.to_string()),
        ("generation.repeat_penalty".into(), g.repeat_penalty.to_string()),
        ("retrieval.enabled".into(), config.retrieval.enabled.to_string()),
        ("chat.prefix".into(), config.chat.prefix.clone()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_carries_its_csrf_token_and_escapes_what_it_shows() {
        let settings = vec![("model.path".to_string(), "<script>x</script>".to_string())];
        let html = render_console("abc123", &settings).unwrap();
        assert!(html.contains(r#"<meta name="csrf-token" content="abc123">"#));
        assert!(html.contains("&#60;script&#62;") || html.contains("&lt;script&gt;"), "not escaped: {html}");
        assert!(!html.contains("<script>x</script>"));
        assert!(render_login(Some("nope")).unwrap().contains("nope"));
    }
}
