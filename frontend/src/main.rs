//! The browser entry point Trunk builds (index.html). All logic lives in the library.

fn main() {
    yew::Renderer::<psgate_frontend::components::App>::new().render();
}
