//! The other pages' entry point Trunk builds (pages.html → dist/pages/): the CLIXML viewer (`/viewer`) and the watch
//! page (`/watch/`: a shared session, the audit). The relay serves it at those paths.

fn main() {
    yew::Renderer::<psgate_frontend::components::Pages>::new().render();
}
